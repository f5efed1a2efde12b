#include "codec.hpp"

#include <cstdint>
#include <limits>
#include <utility>

#include "json.hpp"

namespace lazyroot::codec {

namespace {

using json::Type;
using json::Value;

// ---------------------------------------------------------------------------
// Encoding

Result<std::string> serialise(const Value& v) {
  std::string out, error;
  if (!json::encode(v, out, error)) return Error("invalid_argument", "cannot encode the request: " + error);
  return out;
}

Value strings(const std::vector<std::string>& items) {
  Value a = Value::array();
  for (const std::string& s : items) a.push(Value::string(s));
  return a;
}

// ---------------------------------------------------------------------------
// Decoding: every getter leaves `out` untouched when the field is absent or
// null (the proto3 default is already there) and names the field on error.

class Decoder {
 public:
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  void str(const Value& obj, const char* key, std::string& out, const std::string& ctx) {
    const Value* v = field(obj, key);
    if (v == nullptr) return;
    if (v->type() != Type::String) return wrong(ctx, key, "a string", *v);
    out = v->text();
  }

  void boolean(const Value& obj, const char* key, bool& out, const std::string& ctx) {
    const Value* v = field(obj, key);
    if (v == nullptr) return;
    if (v->type() != Type::Bool) return wrong(ctx, key, "a boolean", *v);
    out = v->as_bool();
  }

  template <typename U>
  void uint(const Value& obj, const char* key, U& out, const std::string& ctx) {
    const Value* v = field(obj, key);
    if (v == nullptr) return;
    uint64_t n;
    if (!json::to_unsigned(*v, std::numeric_limits<U>::max(), n)) {
      return fail(ctx + key + " must be an integer from 0 to " +
                  std::to_string(std::numeric_limits<U>::max()));
    }
    out = static_cast<U>(n);
  }

  void str_list(const Value& obj, const char* key, std::vector<std::string>& out, const std::string& ctx) {
    const Value* v = field(obj, key);
    if (v == nullptr) return;
    if (v->type() != Type::Array) return wrong(ctx, key, "an array of strings", *v);
    out.clear();
    for (const Value& item : v->items()) {
      if (item.type() != Type::String) return fail(ctx + key + " must hold only strings");
      out.push_back(item.text());
    }
  }

  // The array at `key` (nullptr when absent or null; sets an error when it is
  // something else).
  const Value* array(const Value& obj, const char* key, const std::string& ctx) {
    const Value* v = field(obj, key);
    if (v == nullptr) return nullptr;
    if (v->type() != Type::Array) {
      wrong(ctx, key, "an array", *v);
      return nullptr;
    }
    return v;
  }

  bool object(const Value& v, const std::string& what) {
    if (v.type() == Type::Object) return true;
    fail(what + " must be a JSON object, got " + json::type_name(v.type()));
    return false;
  }

  void image(const Value& v, Image& out, const std::string& ctx) {
    if (!object(v, ctx.empty() ? "the answer" : ctx.substr(0, ctx.size() - 1))) return;
    str(v, "id", out.id, ctx);
    str(v, "fqrn", out.fqrn, ctx);
    str(v, "path", out.path, ctx);
    str(v, "root_hash", out.root_hash, ctx);
    uint(v, "revision", out.revision, ctx);
    str(v, "rootfs", out.rootfs, ctx);
    str(v, "appc_name", out.appc_name, ctx);
    str(v, "appc_dir", out.appc_dir, ctx);
    str_list(v, "pinned_by", out.pinned_by, ctx);
  }

  void pin(const Value& v, Pin& out, const std::string& ctx) {
    if (!object(v, ctx.empty() ? "the answer" : ctx.substr(0, ctx.size() - 1))) return;
    str(v, "container_id", out.container_id, ctx);
    str(v, "image_id", out.image_id, ctx);
    str(v, "root_hash", out.root_hash, ctx);
    str(v, "rootfs", out.rootfs, ctx);
    boolean(v, "operator_pin", out.operator_pin, ctx);
  }

 private:
  const Value* field(const Value& obj, const char* key) {
    if (!ok()) return nullptr;  // report the first problem only
    const Value* v = obj.find(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }

  void wrong(const std::string& ctx, const char* key, const char* expected, const Value& got) {
    fail(ctx + key + " must be " + expected + ", got " + json::type_name(got.type()));
  }

  void fail(const std::string& what) {
    if (error_.empty()) error_ = what;
  }

  std::string error_;
};

// Parses `body` as a JSON object or returns the "internal" error to report.
bool parse_object(std::string_view body, Value& out, std::string& error) {
  if (!json::parse(body, out, error)) return false;
  if (out.type() != Type::Object) {
    error = std::string("the answer must be a JSON object, got ") + json::type_name(out.type());
    return false;
  }
  return true;
}

Error malformed(const std::string& method, const std::string& what) {
  return Error("internal", "malformed " + method + " answer from the daemon: " + what);
}

template <typename T, typename Fill>
Result<T> decode(std::string_view body, const char* method, Fill fill) {
  Value v;
  std::string error;
  if (!parse_object(body, v, error)) return malformed(method, error);
  Decoder d;
  T out;
  fill(d, v, out);
  if (!d.ok()) return malformed(method, d.error());
  return out;
}

std::string excerpt(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, 200)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7F) ? c : '?';
  }
  if (body.size() > 200) out += "...";
  return out;
}

}  // namespace

Result<std::string> encode(const PrepareImageRequest& r) {
  Value v = Value::object();
  v.set("fqrn", Value::string(r.fqrn));
  v.set("path", Value::string(r.path));
  if (!r.root_hash.empty()) v.set("root_hash", Value::string(r.root_hash));
  if (!r.tag.empty()) v.set("tag", Value::string(r.tag));
  return serialise(v);
}

// Fields at their proto3 default are left out (the daemon reads absent as
// default), so a Pin by id is exactly what it was before appc names existed,
// and operator_pin appears only when true.
Result<std::string> encode(const PinRequest& r) {
  Value v = Value::object();
  v.set("container_id", Value::string(r.container_id));
  if (!r.image_id.empty()) v.set("image_id", Value::string(r.image_id));
  if (!r.appc_name.empty()) v.set("appc_name", Value::string(r.appc_name));
  if (!r.appc_labels.empty()) {
    Value labels = Value::array();
    for (const AppcLabel& label : r.appc_labels) {
      // Both members always: an empty value is a value the task gave.
      Value l = Value::object();
      l.set("key", Value::string(label.key));
      l.set("value", Value::string(label.value));
      labels.push(std::move(l));
    }
    v.set("appc_labels", std::move(labels));
  }
  if (r.operator_pin) v.set("operator_pin", Value::boolean(true));
  return serialise(v);
}

Result<std::string> encode(const UnpinRequest& r) {
  Value v = Value::object();
  v.set("container_id", Value::string(r.container_id));
  return serialise(v);
}

Result<std::string> encode(const SyncPinsRequest& r) {
  Value v = Value::object();
  v.set("container_ids", strings(r.container_ids));
  return serialise(v);
}

std::string encode_empty() { return "{}"; }

Result<Image> decode_image(std::string_view body) {
  return decode<Image>(body, "PrepareImage", [](Decoder& d, const Value& v, Image& out) {
    d.image(v, out, "");
  });
}

Result<Pin> decode_pin(std::string_view body) {
  return decode<Pin>(body, "Pin", [](Decoder& d, const Value& v, Pin& out) { d.pin(v, out, ""); });
}

Result<UnpinResponse> decode_unpin(std::string_view body) {
  return decode<UnpinResponse>(body, "Unpin", [](Decoder& d, const Value& v, UnpinResponse& out) {
    d.boolean(v, "was_pinned", out.was_pinned, "");
  });
}

Result<SyncPinsResponse> decode_sync_pins(std::string_view body) {
  return decode<SyncPinsResponse>(body, "SyncPins", [](Decoder& d, const Value& v, SyncPinsResponse& out) {
    d.str_list(v, "removed", out.removed, "");
  });
}

Result<ListImagesResponse> decode_list_images(std::string_view body) {
  return decode<ListImagesResponse>(body, "ListImages", [](Decoder& d, const Value& v, ListImagesResponse& out) {
    if (const Value* images = d.array(v, "images", "")) {
      for (std::size_t i = 0; i < images->items().size() && d.ok(); ++i) {
        Image image;
        d.image(images->items()[i], image, "images[" + std::to_string(i) + "].");
        out.images.push_back(std::move(image));
      }
    }
    if (const Value* pins = d.array(v, "pins", "")) {
      for (std::size_t i = 0; i < pins->items().size() && d.ok(); ++i) {
        Pin pin;
        d.pin(pins->items()[i], pin, "pins[" + std::to_string(i) + "].");
        out.pins.push_back(std::move(pin));
      }
    }
  });
}

Result<HealthResponse> decode_health(std::string_view body) {
  return decode<HealthResponse>(body, "Health", [](Decoder& d, const Value& v, HealthResponse& out) {
    d.str(v, "status", out.status, "");
    d.str(v, "version", out.version, "");
    d.uint(v, "images", out.images, "");
    d.uint(v, "pins", out.pins, "");
    d.uint(v, "mounts", out.mounts, "");
    d.uint(v, "pid", out.pid, "");
  });
}

std::string code_for_status(int status) {
  switch (status) {
    case 400: return "invalid_argument";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 409: return "already_exists";
    case 503: return "unavailable";
    default: return "internal";
  }
}

Error decode_error(int status, std::string_view body) {
  Value v;
  std::string ignored;
  std::string code, message;
  if (parse_object(body, v, ignored)) {
    Decoder d;
    d.str(v, "code", code, "");
    d.str(v, "error", message, "");
    if (!d.ok()) {
      code.clear();
      message.clear();
    }
  }
  if (code.empty()) code = code_for_status(status);
  if (message.empty()) {
    message = "the daemon answered HTTP " + std::to_string(status);
    if (!body.empty()) message += ": " + excerpt(body);
  }
  Error e(code, message);
  e.http_status = status;
  return e;
}

}  // namespace lazyroot::codec
