#pragma once
// Helpers shared by the libFuzzer targets (header-only, fuzz builds only).

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include "gateway/api_router.hpp"

namespace arbiter::fuzz {

// A broken invariant: report it and abort, so libFuzzer records a crash.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}
inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// The body parsed the way every API route parses it (ApiCall::json_body:
// the depth limit, then nlohmann). nullopt = a 400 the route answers.
inline std::optional<nlohmann::json> api_json_body(std::string_view body) {
  gateway::ApiRequest request{boost::beast::http::verb::post, "/fuzz", 11};
  request.body() = std::string(body);
  const gateway::ApiCall call{request, "/fuzz", {}, nullptr};
  gateway::ApiResponse error;
  auto json = call.json_body(error);
  if (!json) check(error.result_int() == 400, "json_body failed without a 400");
  return json;
}

// What an API route does with a JSON answer: serialise it. Answers must
// always serialise (invalid UTF-8 in a stored string would throw here).
inline std::string dump_like_api(const nlohmann::json& j) {
  return gateway::ApiRouter::ok(j).body();
}

}  // namespace arbiter::fuzz
