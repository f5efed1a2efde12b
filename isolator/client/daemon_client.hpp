// The lazyroot daemon's control API, one blocking call per method.
//
// Every call opens a fresh connection to the Unix socket, sends one
// `POST /lazyroot.v1.Control/<Method>` and reads the whole answer within a
// timeout, so a caller is never held longer than that by a stuck daemon.
// Callers that must not block (the Mesos isolator) run these calls on a
// thread of their own.
//
// C++11-compatible public header (see result.hpp). Thread-safe: a client
// holds only its configuration.
#ifndef LAZYROOT_CLIENT_DAEMON_CLIENT_HPP
#define LAZYROOT_CLIENT_DAEMON_CLIENT_HPP

#include <string>
#include <vector>

#include "messages.hpp"
#include "result.hpp"

namespace lazyroot {

// Where the daemon listens unless told otherwise.
extern const char* const kDefaultSocket;  // "/run/lazyroot/control.sock"

struct ClientOptions {
  ClientOptions() : timeout_ms(5000), prepare_timeout_ms(30000) {}
  int timeout_ms;          // every method but PrepareImage
  int prepare_timeout_ms;  // PrepareImage may mount a repository and fetch catalogs
};

class DaemonClient {
 public:
  explicit DaemonClient(const std::string& socket_path, const ClientOptions& options = ClientOptions());

  Result<Image> prepare_image(const PrepareImageRequest& request) const;
  // Pin by id, or by appc name and labels (see PinRequest). A request that
  // names no image, or names it both ways, is refused here
  // ("invalid_argument") without a call.
  Result<Pin> pin(const PinRequest& request) const;
  Result<Pin> pin(const std::string& container_id, const std::string& image_id) const;
  Result<UnpinResponse> unpin(const std::string& container_id) const;
  Result<SyncPinsResponse> sync_pins(const std::vector<std::string>& container_ids) const;
  Result<ListImagesResponse> list_images() const;
  Result<HealthResponse> health() const;

  const std::string& socket_path() const { return socket_path_; }
  const ClientOptions& options() const { return options_; }

 private:
  // The 200 answer's body, or the error (daemon Error, transport, HTTP).
  Result<std::string> call(const char* method, const std::string& body, int timeout_ms) const;

  std::string socket_path_;
  ClientOptions options_;
};

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_DAEMON_CLIENT_HPP
