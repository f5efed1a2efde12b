#include "pin_rules.hpp"

namespace lazyroot {

PinRequest PinTarget::request(const std::string& container_id) const {
  PinRequest r;
  r.container_id = container_id;
  r.image_id = image_id;
  r.appc_name = appc_name;
  r.appc_labels = labels;
  return r;  // never an operator pin: SyncPins in recover() must be able to drop it
}

std::string PinTarget::describe() const {
  if (by_id()) return "image " + image_id;
  std::string out = "image '" + appc_name + "'";
  if (labels.empty()) return out + " with no labels";
  out += " with labels ";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    out += (i == 0 ? "" : ", ") + labels[i].key + "=" + labels[i].value;
  }
  return out;
}

bool pin_target_for(const ContainerImage& image, PinTarget* target) {
  if (!image.has_image || !image.appc) return false;
  PinTarget t;
  if (!image.id.empty()) {
    // The id alone: the daemon knows every id it made or served, and the
    // name and labels add nothing once the store has the id.
    t.image_id = image.id;
  } else if (!image.name.empty()) {
    t.appc_name = image.name;
    t.labels = image.labels;
  } else {
    return false;  // names nothing (Mesos requires a name, so never in practice)
  }
  *target = t;
  return true;
}

PinOutcome pin_outcome(const Result<Pin>& pinned, const PinTarget& target, const std::string& container_id,
                       const std::string& socket_path) {
  PinOutcome out;
  if (pinned.ok()) {
    out.kind = PinOutcome::kPinned;
    out.pin = pinned.value();
    // By name: which id the daemon resolved it to.
    out.message = "lazyroot: container " + container_id + " pins " + target.describe() +
                  (target.by_id() ? "" : " (" + out.pin.image_id + ")") + " at root hash " + out.pin.root_hash +
                  " (" + out.pin.rootfs + ")";
    return out;
  }
  out.error = pinned.error();
  if (out.error.code == "not_ours") {
    out.kind = PinOutcome::kNotOurs;
    out.message = "lazyroot: " + target.describe() + " of container " + container_id +
                  " is not a lazyroot image (" + out.error.describe() + "); it runs without a pin";
    return out;
  }
  out.kind = PinOutcome::kFailed;
  out.message = pin_failure_message(target, container_id, socket_path, out.error);
  return out;
}

std::string pin_failure_message(const PinTarget& target, const std::string& container_id,
                                const std::string& socket_path, const Error& error) {
  return "lazyroot: cannot pin " + target.describe() + " for container " + container_id + " (daemon socket " +
         socket_path + "): " + error.describe();
}

bool unpin_may_succeed_later(const Error& error) {
  if (error.http_status == 0) return error.code != "invalid_argument";
  // "busy" travels as 409 but means "try again later".
  if (error.http_status >= 400 && error.http_status < 500) return error.code == "busy";
  return true;  // 5xx (and any other status a proxy might invent)
}

}  // namespace lazyroot
