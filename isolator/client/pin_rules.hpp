// The isolator's decisions, without Mesos types, so that they are tested
// here (the module cannot be built on this machine):
//   - which image a container's Pin names (pin_target_for);
//   - what a Pin's answer means for the launch (pin_outcome);
//   - whether a failed Unpin is worth replaying (unpin_may_succeed_later).
// The module only copies Mesos fields into a ContainerImage and acts on the
// answers.
//
// C++11-compatible public header (see result.hpp).
#ifndef LAZYROOT_CLIENT_PIN_RULES_HPP
#define LAZYROOT_CLIENT_PIN_RULES_HPP

#include <string>
#include <vector>

#include "messages.hpp"
#include "result.hpp"

namespace lazyroot {

// A container's image as Mesos describes it
// (ContainerConfig.container_info.mesos.image), copied field by field.
struct ContainerImage {
  ContainerImage() : has_image(false), appc(false) {}
  bool has_image;  // a MESOS container with container_info.mesos.image set
  bool appc;       // image.type() == APPC and image.has_appc()
  std::string id;  // image.appc().id(): empty when not set
  std::string name;  // image.appc().name()
  std::vector<AppcLabel> labels;  // image.appc().labels().labels(), in order
};

// The image a Pin names: by id, or (image_id empty) by appc name and labels.
struct PinTarget {
  std::string image_id;
  std::string appc_name;
  std::vector<AppcLabel> labels;

  bool by_id() const { return !image_id.empty(); }
  // The Pin request for `container_id`.
  PinRequest request(const std::string& container_id) const;
  // "image sha512-..." or "image 'name' with labels version=latest, os=linux",
  // for messages.
  std::string describe() const;
};

// Whether the container's image may be one of the daemon's, and if so what
// its Pin names. Only the daemon knows its images, so any APPC image is
// asked about and the daemon answers "not_ours" for the others:
//   - an APPC image with a non-empty id: by that id (whatever its form:
//     an entry the agent made from an ACI the daemon served is as much
//     the daemon's as one PrepareImage wrote);
//   - an APPC image with no id but a name: by the name and every label,
//     passed through as given (the daemon resolves them as Mesos' appc
//     store did: version defaults to "latest");
//   - no image, a Docker image, or an APPC image with neither: nothing.
// Returns false for nothing (the container runs without a pin).
bool pin_target_for(const ContainerImage& image, PinTarget* target);

// What prepare() does with a Pin's answer.
struct PinOutcome {
  enum Kind {
    kPinned,   // the daemon holds the image for the container
    kNotOurs,  // "not_ours": none of the daemon's images; launch without a pin
    kFailed,   // anything else: the launch fails with `message`
  };
  PinOutcome() : kind(kFailed) {}
  Kind kind;
  Pin pin;        // kPinned: the daemon's answer
  Error error;    // kNotOurs, kFailed: the daemon's (or the client's) error
  // kFailed: the launch's failure, naming the image, the container, the
  // socket and the reason ("<code>: <message>"); otherwise a line to log.
  std::string message;
};

// Only "not_ours" lets a launch go on unpinned: "not_found" is a lazyroot
// image this agent does not serve (the rootfs would not be the one asked
// for, or would vanish), and "unavailable", "invalid_argument", "internal",
// a daemon that is absent or times out, or any other code mean the image
// cannot be held while the container runs.
PinOutcome pin_outcome(const Result<Pin>& pinned, const PinTarget& target, const std::string& container_id,
                       const std::string& socket_path);

// The launch failure's message: "lazyroot: cannot pin <target> for container
// <id> (daemon socket <socket>): <code>: <message>". Also for a daemon that
// could not be started, so that every failed prepare() reads alike.
std::string pin_failure_message(const PinTarget& target, const std::string& container_id,
                                const std::string& socket_path, const Error& error);

// A failed Unpin that may succeed later, and so is kept and replayed: no
// answer at all (daemon absent, timeout, connection closed, unreadable
// answer), a 5xx, or "busy". Not a refusal: a 4xx (invalid_argument,
// not_found, permission_denied, ...), or a request the client itself
// refused (invalid_argument without an answer, e.g. a socket path too long
// for sockaddr_un): replaying those would fail the same way forever.
bool unpin_may_succeed_later(const Error& error);

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_PIN_RULES_HPP
