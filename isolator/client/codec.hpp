// JSON <-> message structs for the control API (proto3 JSON with the proto
// field names). Internal to the client.
//
// Decoding follows proto3 JSON: absent or null fields keep their defaults,
// unknown fields are ignored (a newer daemon may add some), but a known field
// of the wrong type is an error ("internal": the daemon broke the schema).
#ifndef LAZYROOT_CLIENT_CODEC_HPP
#define LAZYROOT_CLIENT_CODEC_HPP

#include <string>
#include <string_view>
#include <vector>

#include "messages.hpp"
#include "result.hpp"

namespace lazyroot::codec {

// Requests. These fail ("invalid_argument") only for strings that are not
// valid UTF-8, which JSON cannot carry.
Result<std::string> encode(const PrepareImageRequest& request);
Result<std::string> encode(const PinRequest& request);
Result<std::string> encode(const UnpinRequest& request);
Result<std::string> encode(const SyncPinsRequest& request);
std::string encode_empty();  // ListImagesRequest, HealthRequest

// Answers (HTTP 200 bodies).
Result<Image> decode_image(std::string_view body);
Result<Pin> decode_pin(std::string_view body);
Result<UnpinResponse> decode_unpin(std::string_view body);
Result<SyncPinsResponse> decode_sync_pins(std::string_view body);
Result<ListImagesResponse> decode_list_images(std::string_view body);
Result<HealthResponse> decode_health(std::string_view body);

// The Error for a non-200 answer: the body's `code` and `error` when it is an
// Error message, otherwise a code derived from the HTTP status and a message
// quoting the start of the body.
Error decode_error(int status, std::string_view body);

// The code a status implies when the body names none.
std::string code_for_status(int status);

}  // namespace lazyroot::codec

#endif  // LAZYROOT_CLIENT_CODEC_HPP
