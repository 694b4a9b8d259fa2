#pragma once
// Async log ingestion (DESIGN.md §4, `POST /custom/v1/log`, `POST /oai/v1/log`):
// turns the body that `@helicone/helpers`' HeliconeManualLogger sends into a
// request-log record, for clients that call their provider themselves and
// only report the call to arbiter.
//
// The wire shape (observed in @helicone/helpers 1.8.3, dist/index.js, sendLog):
//   POST <loggingEndpoint>/{custom|oai|anthropic|googleapis}/v1/log
//   Authorization: Bearer <apiKey>, Content-Type: application/json,
//   then the logger's `headers` option and the call's additionalHeaders
//   (Helicone-Property-*, Helicone-User-Id, Helicone-Request-Id, ...).
//   {
//     "providerRequest":  {"url": "custom-model-nopath", "json": {...request}, "meta": {}},
//     "providerResponse": {"headers": {...logger headers}, "status": 200,
//                          "json": {...results} | {},  "textBody": "<ndjson>"?},
//     "timing": {"startTime": {"seconds": s, "milliseconds": ms},
//                "endTime": {...}, "timeToFirstToken": ms?},
//     "provider": "openai"?
//   }
// `textBody` is set instead of `json` when the response was a string (streams:
// one JSON chunk per line, as openai's Stream.toReadableStream() writes them).
// `meta` is a map of extra Helicone-* headers (Helicone's worker reads it so).
//
// Thread-safety: a pure function; safe from any thread. It may take a few
// milliseconds on megabyte bodies, so call it on the blocking pool like every
// other API handler.

#include <boost/beast/http/fields.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "scoring/expected.hpp"
#include "scoring/request_record.hpp"

namespace arbiter::gateway {

// Bodies above this many bytes are stored truncated (sizes keep the full length).
inline constexpr std::size_t kManualLogBodyCap = std::size_t{1} << 20;

// The upstream name recorded for manually logged calls.
inline constexpr std::string_view kManualLogUpstream = "manual";

// Turns a HeliconeManualLogger body (+ the call's headers) into a record for
// `project`. `path_kind` is the route's first segment: "custom" for
// /custom/v1/log, "oai" for /oai/v1/log ("anthropic" and "googleapis", which
// the package also builds, are accepted too); it only picks the default path
// when the body has none. `now_us` (unix µs) stands in for a missing `timing`.
//
// Errors are kInvalidArgument (400) and name the offending field, e.g.
// "providerRequest.json: expected an object". Nothing from Authorization,
// Helicone-Auth or *-api-key headers is stored; where such a value also
// appears in a body, path, property or id it is replaced by "[REDACTED]".
scoring::Expected<scoring::RequestRecord> parse_manual_log(
    const nlohmann::json& body, const boost::beast::http::fields& headers, std::string_view project,
    std::string_view path_kind, std::int64_t now_us);

}  // namespace arbiter::gateway
