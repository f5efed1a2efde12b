// The control API's messages (proto/lazyroot/v1/control.proto), as plain
// structs. Field names are the proto field names, which are also the JSON
// names on the wire. Absent JSON fields leave the defaults below.
//
// C++11-compatible on purpose (see result.hpp).
#ifndef LAZYROOT_CLIENT_MESSAGES_HPP
#define LAZYROOT_CLIENT_MESSAGES_HPP

#include <cstdint>
#include <string>
#include <vector>

namespace lazyroot {

struct PrepareImageRequest {
  std::string fqrn;
  std::string path;
  std::string root_hash;  // at most one of root_hash and tag; neither: latest
  std::string tag;
};

struct Image {
  Image() : revision(0) {}
  std::string id;
  std::string fqrn;
  std::string path;
  std::string root_hash;
  uint64_t revision;
  std::string rootfs;
  std::string appc_name;
  std::string appc_dir;
  std::vector<std::string> pinned_by;
};

// One appc label (Mesos `Label`: key, and a value that may be empty).
struct AppcLabel {
  AppcLabel() {}
  AppcLabel(const std::string& key_, const std::string& value_) : key(key_), value(value_) {}
  std::string key;
  std::string value;
};

// Names the image by id, or (image_id empty) by the appc name and labels the
// task gave; DaemonClient::pin() refuses neither and both.
struct PinRequest {
  PinRequest() : operator_pin(false) {}
  std::string container_id;
  std::string image_id;
  std::string appc_name;
  std::vector<AppcLabel> appc_labels;
  bool operator_pin;  // the Mesos module never sets it: SyncPins must be able to drop its pins
};

struct Pin {
  Pin() : operator_pin(false) {}
  std::string container_id;
  std::string image_id;
  std::string root_hash;
  std::string rootfs;
  bool operator_pin;
};

struct UnpinRequest {
  std::string container_id;
};

struct UnpinResponse {
  UnpinResponse() : was_pinned(false) {}
  bool was_pinned;
};

struct SyncPinsRequest {
  std::vector<std::string> container_ids;
};

struct SyncPinsResponse {
  std::vector<std::string> removed;
};

struct ListImagesResponse {
  std::vector<Image> images;
  std::vector<Pin> pins;
};

struct HealthResponse {
  HealthResponse() : images(0), pins(0), mounts(0), pid(0) {}
  std::string status;
  std::string version;
  uint32_t images;
  uint32_t pins;
  uint32_t mounts;
  uint64_t pid;
};

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_MESSAGES_HPP
