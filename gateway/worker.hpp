#pragma once
// State shared by the listeners and sessions of one Server.
//
// ServerShared is created before the I/O threads start and is read-only
// afterwards except for its atomics. A Worker is one I/O thread: its
// io_context, its upstream pool, its set of idle client connections and its
// client watches; they are touched only from that thread.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <memory>
#include <unordered_set>

#include "gateway/client_watch.hpp"
#include "gateway/config.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request_context.hpp"
#include "gateway/timed_stream.hpp"
#include "gateway/upstream_pool.hpp"

namespace arbiter::gateway {

class ApiRouter;

struct ServerShared {
  std::shared_ptr<const Config> config;
  std::unique_ptr<UpstreamSet> upstreams;
  ExchangeObserver* observer = nullptr;  // never null: a no-op observer when nothing subscribes
  ApiRouter* api = nullptr;
  boost::asio::thread_pool* blocking = nullptr;  // API handlers and other blocking work
  Metrics metrics;
  std::atomic<bool> stopping{false};
  std::atomic<std::int64_t> sessions{0};  // live client sessions, both listeners
};

class Worker {
 public:
  explicit Worker(ServerShared& s) : shared(s), ioc(1), pool(ioc, *s.upstreams) { watches.start(ioc); }
  ~Worker() { watches.stop_ticking(); }  // the ticker's timer before `ioc`
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Declaration order is destruction order in reverse: coroutine frames still
  // pending when `ioc` is destroyed unregister from `idle`, so `idle` must
  // outlive `ioc`; `pool` holds sockets of `ioc`, so it must die first.
  ServerShared& shared;
  // Client connections waiting for their next request; shutdown closes them.
  std::unordered_set<TimedStream*> idle;
  // Calls waiting on their upstream; pending frames unregister from it when
  // `ioc` is destroyed, so it outlives `ioc` too.
  ClientWatches watches;
  boost::asio::io_context ioc;
  UpstreamPool pool;
};

// Marks a connection idle for the scope of one wait for a request.
class IdleMark {
 public:
  IdleMark(Worker& w, TimedStream& s) : w_(w), s_(&s) { w_.idle.insert(s_); }
  ~IdleMark() { w_.idle.erase(s_); }
  IdleMark(const IdleMark&) = delete;
  IdleMark& operator=(const IdleMark&) = delete;

 private:
  Worker& w_;
  TimedStream* s_;
};

// Session entry points (proxy_session.cpp, api_session.cpp). The stream is
// already accepted (and, for TLS, not yet handshaken).
Task<void> run_proxy_session(Worker& worker, TimedStream stream);
// TLS sessions share ownership of the context they were accepted with, so a
// certificate reload (SIGHUP) never pulls it from under a live connection.
Task<void> run_proxy_session_tls(Worker& worker, TimedStream stream,
                                 std::shared_ptr<boost::asio::ssl::context> tls);
Task<void> run_api_session(Worker& worker, TimedStream stream);
Task<void> run_api_session_tls(Worker& worker, TimedStream stream,
                               std::shared_ptr<boost::asio::ssl::context> tls);

}  // namespace arbiter::gateway
