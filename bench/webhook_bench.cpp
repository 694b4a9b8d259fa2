// Webhook benchmark (issue "webhooks", DESIGN.md §9):
//   1. what the outbox costs the storage thread: records written per second
//      with no webhook and with one (each record then also writes a delivery
//      in the same batch);
//      and, in CPU time, what the listener (on_records) adds per record;
//   2. delivery throughput: N queued deliveries sent to a local receiver over
//      real sockets (OutboundHttp, keep-alive), signed, recorded in the
//      outbox — deliveries per second from start() until all are delivered,
//      and the process's CPU per delivery (dispatcher, client and the
//      in-process receiver together);
//   3. with --rate R: deliveries as they flow, the way a gateway makes them —
//      the dispatcher already running, N records submitted at R per second —
//      and the CPU per delivery of the dispatcher thread (arb-webhooks) and
//      of the outbound client's (arb-outbound), from /proc; plus how many
//      first attempts came from the in-memory hand-off.
//
//   webhook_bench [--records N] [--in-flight K] [--bodies] [--rate R [--live-only]]
//
// --live-only skips stages 1 and 2 (for profiling the flowing case alone).
//
// Runs in a fresh temp directory (removed at the end) and prints one JSON
// object. Timing lives here, never in pass/fail tests.

#include <rocksdb/write_batch.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "scoring/request_log.hpp"
#include "scoring/webhook_service.hpp"
#include "scoring/webhook_signing.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/webhook_receiver.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace arbiter::scoring;

RequestRecord make_record(int i) {
  RequestRecord r;
  r.request_id = random_uuid();
  r.project = "bench";
  r.created_at_us = 1714564800000000 + i;
  r.response_at_us = r.created_at_us + 350'000;
  r.latency_ms = 350;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o-mini";
  r.response_model = r.request_model;
  r.properties["env"] = i % 2 == 0 ? "prod" : "dev";
  r.prompt_tokens = 120;
  r.completion_tokens = 40;
  r.total_tokens = 160;
  r.cost_usd = 0.000042;
  r.request_body =
      R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"Summarise the attached text in one sentence."}]})";
  r.response_body =
      R"({"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"A one-sentence summary."},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":40,"total_tokens":160}})";
  return r;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time, which other work on a shared machine disturbs far less than wall time.
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Waits until the service has delivered `records`; false after 10 minutes.
bool wait_delivered(const WebhookService& service, int records) {
  const auto deadline = Clock::now() + std::chrono::minutes(10);
  while (service.stats().at(0).second.delivered < static_cast<std::uint64_t>(records)) {
    if (Clock::now() > deadline) {
      std::fprintf(stderr, "deliveries timed out: %llu of %d (last error: %s)\n",
                   static_cast<unsigned long long>(service.stats().at(0).second.delivered), records,
                   service.last_error().c_str());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// CPU seconds (user + system) of this process's threads, by thread name.
std::map<std::string, double> thread_cpu_by_name() {
  std::map<std::string, double> out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto open = stat.find('(');
    const auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string name = stat.substr(open + 1, close - open - 1);
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15: utime, stime
      if (i == 14) utime = std::stod(field);
      if (i == 15) stime = std::stod(field);
    }
    out[name] += (utime + stime) / tick;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int records = 20000;
  std::size_t in_flight = 8;
  bool bodies = false;
  double rate = 0;
  bool live_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--records" && i + 1 < argc) {
      records = std::atoi(argv[++i]);
    } else if (a == "--in-flight" && i + 1 < argc) {
      in_flight = static_cast<std::size_t>(std::atoi(argv[++i]));
    } else if (a == "--bodies") {
      bodies = true;
    } else if (a == "--rate" && i + 1 < argc) {
      rate = std::atof(argv[++i]);
    } else if (a == "--live-only") {
      live_only = true;
    } else {
      std::fprintf(stderr, "usage: webhook_bench [--records N] [--in-flight K] [--bodies] [--rate R [--live-only]]\n");
      return 2;
    }
  }
  if (records <= 0 || in_flight == 0 || rate < 0 || (live_only && rate == 0)) return 2;

  arbiter::testing::WebhookReceiverOptions ro;
  ro.record_requests = false;
  ro.threads = 1;
  arbiter::testing::WebhookReceiver receiver({}, ro);

  WebhookOptions hook;
  hook.name = "bench";
  hook.url = receiver.url("/hook");
  hook.secret_text = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  hook.key = *decode_webhook_secret(hook.secret_text);
  hook.allow_insecure = true;  // loopback receiver
  hook.include_bodies = bodies;
  hook.max_in_flight = in_flight;
  hook.retry.initial_backoff = std::chrono::milliseconds(10);
  hook.retry.max_backoff = std::chrono::milliseconds(100);

  nlohmann::json out;
  out["records"] = records;
  out["max_in_flight"] = in_flight;
  out["include_bodies"] = bodies;

  for (int with_hook = 0; with_hook <= 1 && !live_only; ++with_hook) {
    arbiter::testing::TempDir dir;
    RequestLogOptions lo;
    lo.path = (dir.path() / "data").string();
    RequestLog log(std::move(lo));
    WebhookServiceOptions so;
    if (with_hook) so.webhooks.push_back(hook);
    WebhookService service(log, std::move(so), make_outbound_transport());
    log.add_listener(&service);
    std::vector<RequestRecord> prepared;
    prepared.reserve(static_cast<std::size_t>(records));
    for (int i = 0; i < records; ++i) prepared.push_back(make_record(i));

    // 1. storage thread: submit everything, wait until written.
    const auto t0 = Clock::now();
    for (auto& r : prepared) {
      while (!log.submit(std::move(r))) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (!log.flush(std::chrono::minutes(5))) {
      std::fprintf(stderr, "flush timed out\n");
      return 1;
    }
    const double write_s = seconds_since(t0);
    out[with_hook ? "with_webhook" : "without_webhook"]["records_per_s"] = records / write_s;

    if (!with_hook) {
      service.stop();
      (void)log.close();
      continue;
    }

    // What on_records costs the storage thread, in CPU time: offer batches
    // of 512 records to the listener and throw the batches away.
    {
      std::vector<RequestRecord> sample;
      for (int i = 0; i < 512; ++i) sample.push_back(make_record(i));
      std::vector<const RequestRecord*> ptrs;
      for (const auto& r : sample) ptrs.push_back(&r);
      constexpr int kRounds = 40;
      double cpu = 0;
      (void)log.with_lease([&](const Store::Lease& db) -> Expected<void> {
        for (int round = 0; round < kRounds; ++round) {
          rocksdb::WriteBatch batch;
          const double c0 = thread_cpu_s();
          service.on_records(db, ptrs, batch);
          cpu += thread_cpu_s() - c0;
        }
        return {};
      });
      out["listener_cpu_us_per_record"] = cpu * 1e6 / (kRounds * 512.0);
    }

    // 2. deliveries: everything is queued; start and wait until delivered.
    const auto t1 = Clock::now();
    const double cpu1 = process_cpu_s();
    service.start();
    if (!wait_delivered(service, records)) return 1;
    const double deliver_s = seconds_since(t1);
    out["process_cpu_us_per_delivery"] = (process_cpu_s() - cpu1) * 1e6 / records;
    const auto st = service.stats().at(0).second;
    out["deliveries_per_s"] = records / deliver_s;
    out["delivery_seconds"] = deliver_s;
    out["attempts"] = st.attempts;
    out["failed_attempts"] = st.failed_attempts;
    out["receiver_requests"] = receiver.request_count();
    service.stop();
    (void)log.close();
  }

  if (rate > 0) {
    // 3. as they flow: the dispatcher runs while the records arrive.
    arbiter::testing::TempDir dir;
    RequestLogOptions lo;
    lo.path = (dir.path() / "data").string();
    RequestLog log(std::move(lo));
    WebhookServiceOptions so;
    so.webhooks.push_back(hook);
    WebhookService service(log, std::move(so), make_outbound_transport());
    log.add_listener(&service);
    service.start();
    const auto before = thread_cpu_by_name();
    const auto t0 = Clock::now();
    const auto interval = std::chrono::duration<double>(1.0 / rate);
    for (int i = 0; i < records; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(interval * i));
      while (!log.submit(make_record(i))) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (!wait_delivered(service, records)) return 1;
    const double live_s = seconds_since(t0);
    const auto after = thread_cpu_by_name();
    auto per_delivery_us = [&](const std::string& name) {
      const double b = before.count(name) ? before.at(name) : 0;
      const double a = after.count(name) ? after.at(name) : 0;
      return (a - b) * 1e6 / records;
    };
    const auto st = service.stats().at(0).second;
    out["live"] = {{"rate", rate},
                   {"seconds", live_s},
                   {"dispatcher_cpu_us_per_delivery", per_delivery_us("arb-webhooks")},
                   {"outbound_cpu_us_per_delivery", per_delivery_us("arb-outbound")},
                   {"storage_cpu_us_per_delivery", per_delivery_us("arb-storage")},
                   {"handed", st.handed},
                   {"attempts", st.attempts}};
    service.stop();
    (void)log.close();
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
