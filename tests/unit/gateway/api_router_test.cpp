#include "gateway/api_router.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gateway/config.hpp"
#include "gateway/metrics.hpp"
#include "scoring/expected.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::gateway {
namespace {

namespace http = boost::beast::http;
using nlohmann::json;

const char* const kYaml =
    "upstreams:\n"
    "  - name: openai\n"
    "    base_url: https://api.openai.com\n"
    "projects:\n"
    "  - name: alpha\n"
    "    api_keys: [\"key-a\"]\n"
    "  - name: beta\n"
    "    api_keys: [\"key-b\"]\n";

ApiRequest request(http::verb method, std::string target, std::optional<std::string> authorization = std::nullopt,
                   std::string body = "") {
  ApiRequest req{method, std::move(target), 11};
  req.set(http::field::host, "localhost");
  if (authorization) req.set(http::field::authorization, *authorization);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.prepare_payload();
  return req;
}

json body_json(const ApiResponse& res) { return json::parse(res.body()); }

class ApiRouterTest : public ::testing::Test {
 protected:
  ApiRouterTest() : config_(load_config_from_string(kYaml, "api_router_test.yaml")), router_(config_, metrics_) {
    // Echoes what the router handed to the handler.
    router_.add(http::verb::get, "/v1/things/{}", true, [this](const ApiCall& call) {
      ++calls_;
      std::vector<std::string> params(call.params.begin(), call.params.end());
      return ApiRouter::ok({{"param", params.at(0)},
                            {"params", params},
                            {"path", std::string(call.path)},
                            {"project", call.project ? json(call.project->name) : json(nullptr)}});
    });
    router_.add(http::verb::post, "/v1/things/{}/parts/{}", true, [this](const ApiCall& call) {
      ++calls_;
      std::vector<std::string> params(call.params.begin(), call.params.end());
      return ApiRouter::ok({{"params", params}, {"body", call.request.body()}}, 201);
    });
    router_.add(http::verb::get, "/v1/public", false, [this](const ApiCall& call) {
      ++calls_;
      return ApiRouter::ok({{"project", call.project ? json(call.project->name) : json(nullptr)}});
    });
    // Same path as above with another method, to check method dispatch among routes.
    router_.add(http::verb::delete_, "/v1/public", false, [this](const ApiCall&) {
      ++calls_;
      return ApiRouter::ok("deleted");
    });
  }

  ApiResponse handle(http::verb method, std::string target, std::optional<std::string> authorization = std::nullopt) {
    return router_.handle(request(method, std::move(target), std::move(authorization)));
  }

  Metrics metrics_;
  std::shared_ptr<const Config> config_;
  ApiRouter router_;
  int calls_ = 0;
};

void expect_error_envelope(const ApiResponse& res, unsigned status) {
  EXPECT_EQ(res.result_int(), status);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  const json j = body_json(res);
  ASSERT_TRUE(j.is_object()) << res.body();
  EXPECT_EQ(j.size(), 2u) << res.body();
  EXPECT_TRUE(j.contains("data") && j["data"].is_null()) << res.body();
  ASSERT_TRUE(j.contains("error") && j["error"].is_string()) << res.body();
  EXPECT_FALSE(j["error"].get<std::string>().empty());
}

// --- built-in routes -------------------------------------------------------------

TEST_F(ApiRouterTest, HealthzWithoutAuth) {
  const auto res = handle(http::verb::get, "/healthz");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(body_json(res), (json{{"status", "ok"}}));
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

TEST_F(ApiRouterTest, HealthzShowsEachCheckAndStaysUpWhenOneFails) {
  bool storage_ok = true;
  router_.add_health_check("storage", [&] {
    return ApiRouter::HealthCheck{storage_ok, json{{"ok", storage_ok}}};
  });
  auto res = handle(http::verb::get, "/healthz");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res), (json{{"status", "ok"}, {"storage", {{"ok", true}}}}));

  storage_ok = false;
  res = handle(http::verb::get, "/healthz");
  EXPECT_EQ(res.result_int(), 200u) << "a liveness probe: the process still serves";
  EXPECT_EQ(body_json(res), (json{{"status", "degraded"}, {"storage", {{"ok", false}}}}));
}

TEST_F(ApiRouterTest, HealthzIgnoresAWrongKey) {
  const auto res = handle(http::verb::get, "/healthz", "Bearer wrong");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res), (json{{"status", "ok"}}));
}

TEST_F(ApiRouterTest, MetricsIsPrometheusText) {
  metrics_.proxy_requests_total = 42;
  const auto res = handle(http::verb::get, "/metrics");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4");
  EXPECT_NE(res.body().find("# TYPE arbiter_proxy_requests_total counter\n"), std::string::npos) << res.body();
  EXPECT_NE(res.body().find("\narbiter_proxy_requests_total 42\n"), std::string::npos) << res.body();
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

TEST_F(ApiRouterTest, MetricsReadsLiveCounters) {
  EXPECT_NE(handle(http::verb::get, "/metrics").body().find("\narbiter_proxy_requests_total 0\n"), std::string::npos);
  metrics_.proxy_requests_total = 7;
  EXPECT_NE(handle(http::verb::get, "/metrics").body().find("\narbiter_proxy_requests_total 7\n"), std::string::npos);
}

TEST_F(ApiRouterTest, HealthzPostIs405) {
  const auto res = handle(http::verb::post, "/healthz");
  expect_error_envelope(res, 405);
  EXPECT_EQ(body_json(res)["error"], "method POST not allowed on /healthz");
}

// --- authentication -------------------------------------------------------------

TEST_F(ApiRouterTest, NoAuthorizationHeaderIs401) {
  const auto res = handle(http::verb::get, "/v1/things/abc");
  expect_error_envelope(res, 401);
  EXPECT_EQ(calls_, 0);
}

TEST_F(ApiRouterTest, WrongKeyIs401) {
  const auto res = handle(http::verb::get, "/v1/things/abc", "Bearer key-c");
  expect_error_envelope(res, 401);
  EXPECT_EQ(calls_, 0);
}

TEST_F(ApiRouterTest, MalformedAuthorizationIs401) {
  for (const char* auth : {"key-a", "Basic key-a", "Bearer", "Bearer ", "Bearerkey-a", "Bearer KEY-A",
                           "Bearer key-a extra", "Token key-a"}) {
    const auto res = handle(http::verb::get, "/v1/things/abc", std::string(auth));
    expect_error_envelope(res, 401);
  }
  EXPECT_EQ(calls_, 0);
}

TEST_F(ApiRouterTest, KeyAReachesProjectAlpha) {
  const auto res = handle(http::verb::get, "/v1/things/abc", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(body_json(res), (json{{"data",
                                   {{"param", "abc"},
                                    {"params", {"abc"}},
                                    {"path", "/v1/things/abc"},
                                    {"project", "alpha"}}},
                                  {"error", nullptr}}));
  EXPECT_EQ(calls_, 1);
}

TEST_F(ApiRouterTest, KeyBReachesProjectBeta) {
  const auto res = handle(http::verb::get, "/v1/things/xyz", "Bearer key-b");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res)["data"]["project"], "beta");
  EXPECT_EQ(body_json(res)["data"]["param"], "xyz");
}

TEST_F(ApiRouterTest, BearerSchemeIsCaseInsensitiveAndBlanksTrimmed) {
  for (const char* auth : {"bearer key-a", "BEARER key-a", "Bearer   key-a", "  Bearer key-a  "}) {
    const auto res = handle(http::verb::get, "/v1/things/abc", std::string(auth));
    EXPECT_EQ(res.result_int(), 200u) << '"' << auth << '"';
    EXPECT_EQ(body_json(res)["data"]["project"], "alpha") << '"' << auth << '"';
  }
}

TEST_F(ApiRouterTest, HeliconeAuthIsNotAcceptedOnTheApi) {
  // The API takes the project key in Authorization only (DESIGN.md §4).
  auto req = request(http::verb::get, "/v1/things/abc");
  req.set("Helicone-Auth", "Bearer key-a");
  expect_error_envelope(router_.handle(req), 401);
}

TEST_F(ApiRouterTest, UnauthenticatedRouteHasNoProjectEvenWithAKey) {
  const auto res = handle(http::verb::get, "/v1/public", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res), (json{{"data", {{"project", nullptr}}}, {"error", nullptr}}));
}

// --- matching ------------------------------------------------------------------

TEST_F(ApiRouterTest, QueryStringIsIgnoredForMatching) {
  const auto res = handle(http::verb::get, "/v1/things/abc?includeBody=true&x=/y/z", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res)["data"]["param"], "abc");
  EXPECT_EQ(body_json(res)["data"]["path"], "/v1/things/abc");

  EXPECT_EQ(handle(http::verb::get, "/healthz?probe=1").result_int(), 200u);
  EXPECT_EQ(handle(http::verb::get, "/healthz?").result_int(), 200u);
}

TEST_F(ApiRouterTest, SeveralParams) {
  ApiRequest req = request(http::verb::post, "/v1/things/t1/parts/p2", "Bearer key-b", R"({"x":1})");
  const auto res = router_.handle(req);
  EXPECT_EQ(res.result_int(), 201u);
  EXPECT_EQ(body_json(res), (json{{"data", {{"params", {"t1", "p2"}}, {"body", R"({"x":1})"}}}, {"error", nullptr}}));
}

TEST_F(ApiRouterTest, ParamsAreNotPercentDecoded) {
  const auto res = handle(http::verb::get, "/v1/things/a%2Fb%20c", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res)["data"]["param"], "a%2Fb%20c");
}

TEST_F(ApiRouterTest, UnknownPathIs404WithEnvelope) {
  const auto res = handle(http::verb::get, "/v1/nothing-here", "Bearer key-a");
  expect_error_envelope(res, 404);
  EXPECT_EQ(body_json(res), (json{{"data", nullptr}, {"error", "no route for GET /v1/nothing-here"}}));
}

TEST_F(ApiRouterTest, UnknownPathIs404EvenWithoutAuth) {
  expect_error_envelope(handle(http::verb::get, "/nope"), 404);
  expect_error_envelope(handle(http::verb::get, "/"), 404);
  expect_error_envelope(handle(http::verb::get, "/v1"), 404);
  expect_error_envelope(handle(http::verb::get, "/v1/things"), 404);                 // too few segments
  expect_error_envelope(handle(http::verb::get, "/v1/things/a/b", "Bearer key-a"), 404);  // too many
}

TEST_F(ApiRouterTest, LiteralSegmentsAreCaseSensitive) {
  expect_error_envelope(handle(http::verb::get, "/HEALTHZ"), 404);
  expect_error_envelope(handle(http::verb::get, "/V1/things/abc", "Bearer key-a"), 404);
}

TEST_F(ApiRouterTest, KnownPathOtherMethodIs405) {
  const auto res = handle(http::verb::delete_, "/v1/things/abc", "Bearer key-a");
  expect_error_envelope(res, 405);
  EXPECT_EQ(body_json(res), (json{{"data", nullptr}, {"error", "method DELETE not allowed on /v1/things/abc"}}));
  EXPECT_EQ(calls_, 0);
}

TEST_F(ApiRouterTest, MethodIsCheckedBeforeAuth) {
  // A wrong method on an authenticated path answers 405 before looking at the key.
  expect_error_envelope(handle(http::verb::put, "/v1/things/abc"), 405);
}

TEST_F(ApiRouterTest, SamePathDifferentMethodsDispatchToTheirOwnHandler) {
  const auto get = handle(http::verb::get, "/v1/public");
  EXPECT_EQ(get.result_int(), 200u);
  EXPECT_EQ(body_json(get)["data"], (json{{"project", nullptr}}));
  const auto del = handle(http::verb::delete_, "/v1/public");
  EXPECT_EQ(del.result_int(), 200u);
  EXPECT_EQ(body_json(del)["data"], "deleted");
  expect_error_envelope(handle(http::verb::post, "/v1/public"), 405);
}

// Empty path segments are skipped when splitting, so a trailing slash or a
// doubled slash matches the same route as the canonical path.
TEST_F(ApiRouterTest, TrailingSlashMatchesTheSameRoute) {
  EXPECT_EQ(handle(http::verb::get, "/healthz/").result_int(), 200u);
  const auto res = handle(http::verb::get, "/v1/things/abc/", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res)["data"]["param"], "abc");
  // The handler sees the path as sent.
  EXPECT_EQ(body_json(res)["data"]["path"], "/v1/things/abc/");
}

TEST_F(ApiRouterTest, DoubleSlashesMatchTheSameRoute) {
  EXPECT_EQ(handle(http::verb::get, "//healthz").result_int(), 200u);
  const auto res = handle(http::verb::get, "/v1//things//abc", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res)["data"]["param"], "abc");
  EXPECT_EQ(body_json(res)["data"]["path"], "/v1//things//abc");
}

TEST_F(ApiRouterTest, EmptySegmentCannotFillAParam) {
  // "/v1/things//" has no third segment, so it is not /v1/things/{} with an empty id.
  expect_error_envelope(handle(http::verb::get, "/v1/things//", "Bearer key-a"), 404);
  expect_error_envelope(handle(http::verb::get, "/v1/things/?id=1", "Bearer key-a"), 404);
}

TEST_F(ApiRouterTest, DotSegmentsAreNotResolved) {
  // "." and ".." are ordinary segments: no path normalisation.
  const auto res = handle(http::verb::get, "/v1/things/..", "Bearer key-a");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_json(res)["data"]["param"], "..");
  expect_error_envelope(handle(http::verb::get, "/v1/things/abc/../../healthz"), 404);
}

TEST_F(ApiRouterTest, ResponseVersionFollowsTheRequest) {
  ApiRequest req = request(http::verb::get, "/healthz");
  req.version(10);
  EXPECT_EQ(router_.handle(req).version(), 10u);
  req.version(11);
  EXPECT_EQ(router_.handle(req).version(), 11u);
}

TEST_F(ApiRouterTest, InvalidUtf8InPathStillGivesValidJson) {
  // The 404 message quotes the path; invalid bytes must not break serialisation.
  const auto res = handle(http::verb::get, "/v1/\xff\xfe");
  expect_error_envelope(res, 404);
}

TEST_F(ApiRouterTest, HandlerExceptionsBecomeAGeneric500) {
  // The router is the catch boundary: an exception's text never reaches the client.
  router_.add(http::verb::get, "/v1/throws", false, [](const ApiCall&) -> ApiResponse {
    throw std::runtime_error("boom");
  });
  ApiResponse res;
  ASSERT_NO_THROW(res = handle(http::verb::get, "/v1/throws"));
  expect_error_envelope(res, 500);
  EXPECT_EQ(res.body().find("boom"), std::string::npos);
}

TEST_F(ApiRouterTest, FirstRegisteredRouteWins) {
  router_.add(http::verb::get, "/v1/things/special", false, [](const ApiCall&) { return ApiRouter::ok("special"); });
  // /v1/things/{} was registered first and needs auth.
  expect_error_envelope(handle(http::verb::get, "/v1/things/special"), 401);
  EXPECT_EQ(body_json(handle(http::verb::get, "/v1/things/special", "Bearer key-a"))["data"]["param"], "special");
}

// --- response helpers -------------------------------------------------------------

TEST(ApiRouterHelpersTest, OkEnvelope) {
  const auto res = ApiRouter::ok(json{{"a", 1}});
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.version(), 11u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"data":{"a":1},"error":null})");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

TEST(ApiRouterHelpersTest, OkWithStatus) {
  const auto res = ApiRouter::ok(nullptr, 201);
  EXPECT_EQ(res.result_int(), 201u);
  EXPECT_EQ(res.body(), R"({"data":null,"error":null})");
}

// --- failures inside handlers ------------------------------------------------------

TEST_F(ApiRouterTest, AHandlerThatThrowsGetsAGeneric500WithAnIncidentId) {
  router_.add(http::verb::get, "/v1/boom", true, [](const ApiCall&) -> ApiResponse {
    throw std::runtime_error("vector::at at /work/src/gateway/secret_file.cpp:42");
  });
  router_.add(http::verb::get, "/v1/boom-int", true, [](const ApiCall&) -> ApiResponse { throw 42; });
  router_.add_async(http::verb::get, "/v1/boom-async", true, [](const ApiCall&, ApiRouter::Respond) {
    throw std::logic_error("std::logic_error in score_store.hpp");
  });
  for (const char* target : {"/v1/boom", "/v1/boom-int", "/v1/boom-async"}) {
    SCOPED_TRACE(target);
    const auto res = handle(http::verb::get, target, "Bearer key-a");
    expect_error_envelope(res, 500);
    const std::string id(res["X-Request-Id"]);
    EXPECT_EQ(id.size(), 36u);
    EXPECT_EQ(body_json(res)["error"], "internal error (request id " + id + ")");
    // The id is random hex and may itself contain "42": look in the rest.
    std::string body = res.body();
    if (const auto at = body.find(id); !id.empty() && at != std::string::npos) body.erase(at, id.size());
    for (const char* leak : {"/work", ".cpp", ".hpp", "vector::at", "logic_error", "42"}) {
      EXPECT_EQ(body.find(leak), std::string::npos) << leak;
    }
  }
}

TEST_F(ApiRouterTest, AnAsyncHandlerThatAnsweredThenThrewAnswersOnce) {
  router_.add_async(http::verb::get, "/v1/late-throw", true, [](const ApiCall&, ApiRouter::Respond respond) {
    respond(ApiRouter::ok("fine"));
    throw std::runtime_error("after the answer");
  });
  int answers = 0;
  ApiResponse got;
  router_.handle_async(request(http::verb::get, "/v1/late-throw", "Bearer key-a"), [&](ApiResponse r) {
    ++answers;
    got = std::move(r);
  });
  EXPECT_EQ(answers, 1);
  EXPECT_EQ(got.result_int(), 200u);
}

TEST_F(ApiRouterTest, StorageErrorsAreGenericAndCallerErrorsKeepTheirMessage) {
  const auto storage = ApiRouter::from_error(scoring::storage_error("IO error: /var/lib/arbiter/000012.sst: EIO"));
  expect_error_envelope(storage, 500);
  EXPECT_EQ(storage.body().find("/var/lib"), std::string::npos);
  EXPECT_EQ(storage.body().find("IO error"), std::string::npos);
  const auto invalid = ApiRouter::from_error(scoring::invalid_argument("'comment' is longer than 65536 bytes"));
  expect_error_envelope(invalid, 400);
  EXPECT_EQ(body_json(invalid)["error"], "'comment' is longer than 65536 bytes");
  expect_error_envelope(ApiRouter::from_error(scoring::not_found("request x not found")), 404);
  expect_error_envelope(ApiRouter::from_error(scoring::conflict("not dead")), 409);
  expect_error_envelope(ApiRouter::from_error(scoring::unavailable("closing")), 503);
}

TEST_F(ApiRouterTest, MalformedJsonErrorsCarryNoLibraryTag) {
  router_.add(http::verb::post, "/v1/json", true, [](const ApiCall& call) {
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return bad;
    return ApiRouter::ok(*body);
  });
  ApiRequest req = request(http::verb::post, "/v1/json", "Bearer key-a", "{\"a\": tru}");
  const auto res = router_.handle(req);
  expect_error_envelope(res, 400);
  const std::string error = body_json(res)["error"];
  EXPECT_EQ(error.rfind("request body: malformed JSON: parse error at line 1", 0), 0u) << error;
  EXPECT_EQ(error.find("json.exception"), std::string::npos) << error;
}

TEST_F(ApiRouterTest, RoutesListsEveryRegisteredRoute) {
  const auto routes = router_.routes();
  std::vector<std::string> listed;
  for (const auto& r : routes) listed.push_back(r.method + " " + r.pattern + (r.authenticated ? " auth" : ""));
  const std::vector<std::string> expected = {"GET /healthz",           "GET /metrics",
                                             "GET /v1/things/{} auth", "POST /v1/things/{}/parts/{} auth",
                                             "GET /v1/public",         "DELETE /v1/public"};
  EXPECT_EQ(listed, expected);
}

TEST(ApiRouterHelpersTest, ErrorEnvelope) {
  const auto res = ApiRouter::error(422, "scores.quality: expected an integer or a boolean");
  EXPECT_EQ(res.result_int(), 422u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"data":null,"error":"scores.quality: expected an integer or a boolean"})");
}

TEST(ApiRouterHelpersTest, ErrorMessageIsJsonEscaped) {
  const auto res = ApiRouter::error(400, "bad \"key\"\n\\");
  EXPECT_EQ(json::parse(res.body()), (json{{"data", nullptr}, {"error", "bad \"key\"\n\\"}}));
}

TEST(ApiRouterHelpersTest, InvalidUtf8IsReplacedNotThrown) {
  ApiResponse res;
  ASSERT_NO_THROW(res = ApiRouter::error(400, "bad \xff byte"));
  const json j = json::parse(res.body());
  EXPECT_EQ(j["error"], "bad \xef\xbf\xbd byte");  // U+FFFD
}

TEST(ApiRouterHelpersTest, JsonWithVersion) {
  const auto res = ApiRouter::json(418, json::array({1, 2}), 10);
  EXPECT_EQ(res.result_int(), 418u);
  EXPECT_EQ(res.version(), 10u);
  EXPECT_EQ(res.body(), "[1,2]");
}

// Found by the manual_logger fuzz target: a number beyond double's range
// made nlohmann throw out_of_range, which json_body did not catch.
TEST(ApiCallJsonBody, HostileBodiesAreA400NamingTheProblem) {
  const auto error_for = [](std::string body) {
    ApiRequest req = request(http::verb::post, "/x", std::nullopt, std::move(body));
    const ApiCall call{req, "/x", {}, nullptr};
    ApiResponse error;
    EXPECT_FALSE(call.json_body(error).has_value());
    EXPECT_EQ(error.result_int(), 400u);
    return body_json(error)["error"].get<std::string>();
  };
  EXPECT_NE(error_for(R"({"providerResponse": {"status": 2e308}})").find("number overflow"), std::string::npos);
  EXPECT_NE(error_for(R"({"a": -1e400})").find("malformed JSON"), std::string::npos);
  const std::size_t deep = scoring::kMaxJsonDepth + 1;
  EXPECT_NE(error_for(std::string(deep, '[') + std::string(deep, ']'))
                .find("nested deeper than " + std::to_string(scoring::kMaxJsonDepth)),
            std::string::npos);
  EXPECT_NE(error_for(R"({"a": )").find("malformed JSON"), std::string::npos);
}

}  // namespace
}  // namespace arbiter::gateway
