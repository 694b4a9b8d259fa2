#include "scoring/webhook_transport.hpp"

namespace arbiter::scoring {

namespace {

class OutboundTransport final : public WebhookTransport {
 public:
  explicit OutboundTransport(OutboundOptions options) : client_(std::move(options)) {}

  void send(OutboundRequest request, std::function<void(OutboundResponse)> done) override {
    client_.send(std::move(request), std::move(done));
  }
  OutboundResponse send_sync(OutboundRequest request) override {
    return client_.send_sync(std::move(request));
  }

 private:
  OutboundHttp client_;
};

}  // namespace

std::unique_ptr<WebhookTransport> make_outbound_transport(OutboundOptions options) {
  return std::make_unique<OutboundTransport>(std::move(options));
}

}  // namespace arbiter::scoring
