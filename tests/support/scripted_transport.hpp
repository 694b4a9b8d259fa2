#pragma once
// A webhook transport for tests, in place of the network: it answers each
// request with what the handler returns (nullopt holds the call until the
// transport is destroyed: a receiver that hangs) and remembers every request.

#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "scoring/webhook_transport.hpp"

namespace arbiter::testing {

class ScriptedTransport final : public scoring::WebhookTransport {
 public:
  using Handler = std::function<std::optional<scoring::OutboundResponse>(const scoring::OutboundRequest&)>;
  explicit ScriptedTransport(Handler handler) : handler_(std::move(handler)) {}
  ~ScriptedTransport() override {
    std::vector<std::function<void(scoring::OutboundResponse)>> held;
    {
      std::lock_guard lk(mu_);
      held.swap(held_);
    }
    for (auto& done : held) {
      scoring::OutboundResponse r;
      r.error = "client shut down";
      done(std::move(r));
    }
  }
  void send(scoring::OutboundRequest request, std::function<void(scoring::OutboundResponse)> done) override {
    {
      std::lock_guard lk(mu_);
      requests_.push_back(request);
    }
    auto res = handler_(request);
    if (res) {
      done(std::move(*res));
    } else {
      std::lock_guard lk(mu_);
      held_.push_back(std::move(done));
    }
  }
  scoring::OutboundResponse send_sync(scoring::OutboundRequest request) override {
    {
      std::lock_guard lk(mu_);
      requests_.push_back(request);
    }
    auto res = handler_(request);
    if (res) return *res;
    scoring::OutboundResponse r;
    r.error = "timed out";
    r.timed_out = true;
    return r;
  }
  std::vector<scoring::OutboundRequest> requests() const {
    std::lock_guard lk(mu_);
    return requests_;
  }

 private:
  Handler handler_;
  mutable std::mutex mu_;
  std::vector<scoring::OutboundRequest> requests_;
  std::vector<std::function<void(scoring::OutboundResponse)>> held_;
};

}  // namespace arbiter::testing
