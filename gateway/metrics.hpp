#pragma once
// Process-wide counters, rendered in Prometheus text format on GET /metrics.
// Every member is an atomic updated with relaxed ordering: safe from any
// thread, cheap on the hot path.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace arbiter::gateway {

struct Metrics {
  std::atomic<std::uint64_t> proxy_connections_total{0};
  std::atomic<std::uint64_t> proxy_connections_rejected{0};  // over max_connections
  std::atomic<std::int64_t> proxy_connections_open{0};
  std::atomic<std::uint64_t> proxy_requests_total{0};
  std::atomic<std::int64_t> proxy_requests_in_flight{0};
  std::atomic<std::uint64_t> proxy_responses_completed{0};
  std::atomic<std::uint64_t> proxy_upstream_unreachable{0};
  std::atomic<std::uint64_t> proxy_upstream_timeout{0};
  std::atomic<std::uint64_t> proxy_upstream_broken{0};
  std::atomic<std::uint64_t> proxy_client_cancelled{0};
  std::atomic<std::uint64_t> proxy_rejected_unauthorized{0};
  std::atomic<std::uint64_t> proxy_rejected_bad_request{0};
  std::atomic<std::uint64_t> proxy_rejected_too_large{0};
  std::atomic<std::uint64_t> upstream_connections_opened{0};
  std::atomic<std::uint64_t> upstream_connections_reused{0};
  std::atomic<std::uint64_t> api_requests_total{0};
  std::atomic<std::int64_t> api_connections_open{0};

  std::string render_prometheus() const;
};

inline void inc(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

}  // namespace arbiter::gateway
