#include "daemon_client.hpp"

#include "codec.hpp"
#include "http.hpp"
#include "transport.hpp"

namespace lazyroot {

const char* const kDefaultSocket = "/run/lazyroot/control.sock";

DaemonClient::DaemonClient(const std::string& socket_path, const ClientOptions& options)
    : socket_path_(socket_path), options_(options) {}

Result<std::string> DaemonClient::call(const char* method, const std::string& body, int timeout_ms) const {
  const std::string target = std::string("/lazyroot.v1.Control/") + method;
  Result<transport::Answer> answer =
      transport::exchange(socket_path_, http::build_post(target, body), timeout_ms);
  if (!answer.ok()) {
    Error e = answer.error();
    e.message = std::string(method) + ": " + e.message;
    return e;
  }
  if (answer.value().status != 200) return codec::decode_error(answer.value().status, answer.value().body);
  return answer.value().body;
}

namespace {

// Runs `decode` on a successful body, passes errors through.
template <typename T, typename Decode>
Result<T> then_decode(const Result<std::string>& body, Decode decode) {
  if (!body.ok()) return body.error();
  return decode(body.value());
}

}  // namespace

Result<Image> DaemonClient::prepare_image(const PrepareImageRequest& request) const {
  if (!request.root_hash.empty() && !request.tag.empty()) {
    return Error("invalid_argument", "give a root hash or a tag, not both");
  }
  Result<std::string> body = codec::encode(request);
  if (!body.ok()) return body.error();
  return then_decode<Image>(call("PrepareImage", body.value(), options_.prepare_timeout_ms),
                            codec::decode_image);
}

Result<Pin> DaemonClient::pin(const PinRequest& request) const {
  if (request.image_id.empty() && request.appc_name.empty()) {
    return Error("invalid_argument", "Pin names no image: give an image id, or an appc name and labels");
  }
  if (!request.image_id.empty() && (!request.appc_name.empty() || !request.appc_labels.empty())) {
    return Error("invalid_argument", "Pin names its image twice: give an image id, or an appc name and labels, not both");
  }
  Result<std::string> body = codec::encode(request);
  if (!body.ok()) return body.error();
  return then_decode<Pin>(call("Pin", body.value(), options_.timeout_ms), codec::decode_pin);
}

Result<Pin> DaemonClient::pin(const std::string& container_id, const std::string& image_id) const {
  PinRequest request;
  request.container_id = container_id;
  request.image_id = image_id;
  return pin(request);
}

Result<UnpinResponse> DaemonClient::unpin(const std::string& container_id) const {
  UnpinRequest request;
  request.container_id = container_id;
  Result<std::string> body = codec::encode(request);
  if (!body.ok()) return body.error();
  return then_decode<UnpinResponse>(call("Unpin", body.value(), options_.timeout_ms), codec::decode_unpin);
}

Result<SyncPinsResponse> DaemonClient::sync_pins(const std::vector<std::string>& container_ids) const {
  SyncPinsRequest request;
  request.container_ids = container_ids;
  Result<std::string> body = codec::encode(request);
  if (!body.ok()) return body.error();
  return then_decode<SyncPinsResponse>(call("SyncPins", body.value(), options_.timeout_ms),
                                       codec::decode_sync_pins);
}

Result<ListImagesResponse> DaemonClient::list_images() const {
  return then_decode<ListImagesResponse>(call("ListImages", codec::encode_empty(), options_.timeout_ms),
                                         codec::decode_list_images);
}

Result<HealthResponse> DaemonClient::health() const {
  return then_decode<HealthResponse>(call("Health", codec::encode_empty(), options_.timeout_ms),
                                     codec::decode_health);
}

}  // namespace lazyroot
