#include "scoring/webhook_outbox.hpp"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <memory>
#include <random>

#include "scoring/binary_codec.hpp"
#include "scoring/keys.hpp"
#include "scoring/store.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

constexpr char kFormatVersion = 1;

rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}
std::string_view view(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

std::string tagged(char tag) {
  return std::string(1, tag);
}

std::string queue_key(const Delivery& d) {
  std::string k = outbox::queue_prefix(d.webhook);
  keys::append_ts(k, d.next_attempt_at_us);
  k.append(d.id);
  return k;
}
std::string list_key(const Delivery& d) {
  std::string k = outbox::list_prefix(d.project, d.webhook);
  keys::append_ts(k, d.created_at_us);
  k.append(d.id);
  return k;
}
std::string state_key(const Delivery& d) {
  std::string k = outbox::state_prefix(d.project, d.state, d.webhook);
  keys::append_ts(k, d.created_at_us);
  k.append(d.id);
  return k;
}
std::string request_key(const Delivery& d) {
  std::string k = outbox::request_prefix(d.project, d.request_id);
  k.append(d.id);
  return k;
}
std::string prune_key(const Delivery& d) {
  std::string k = tagged(outbox::kPruneTag);
  keys::append_ts(k, d.created_at_us);
  k.append(d.id);
  return k;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// A (created_at, id) position in a newest-first listing.
struct Position {
  std::int64_t ts = 0;
  std::string id;
  bool operator<(const Position& o) const { return ts != o.ts ? ts < o.ts : id < o.id; }
};

std::string format_cursor(const Position& p) {
  return std::to_string(p.ts) + ":" + p.id;
}

std::optional<Position> parse_cursor(std::string_view c) {
  const auto colon = c.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  Position p;
  const auto ts = c.substr(0, colon);
  const auto [ptr, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), p.ts);
  if (ec != std::errc() || ptr != ts.data() + ts.size()) return std::nullopt;
  p.id = std::string(c.substr(colon + 1));
  if (!valid_delivery_id(p.id)) return std::nullopt;
  return p;
}

}  // namespace

std::string_view to_string(DeliveryState s) {
  switch (s) {
    case DeliveryState::kPending:
      return "pending";
    case DeliveryState::kRetrying:
      return "retrying";
    case DeliveryState::kDelivered:
      return "delivered";
    case DeliveryState::kDead:
      return "dead";
  }
  return "unknown";
}

std::optional<DeliveryState> parse_delivery_state(std::string_view s) {
  for (auto st : {DeliveryState::kPending, DeliveryState::kRetrying, DeliveryState::kDelivered,
                  DeliveryState::kDead}) {
    if (to_string(st) == s) return st;
  }
  return std::nullopt;
}

std::string new_delivery_id(std::int64_t now_ms) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "msg_";
  auto append_hex = [&id](std::uint64_t v, int digits) {  // most significant digit first
    for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) id.push_back(kHex[(v >> shift) & 0xF]);
  };
  // 48 bits of milliseconds (until the year 10889), then 64 + 16 random bits.
  append_hex(static_cast<std::uint64_t>(std::max<std::int64_t>(now_ms, 0)), 12);
  append_hex(rng(), 16);
  append_hex(rng(), 4);
  return id;
}

std::string new_delivery_id() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return new_delivery_id(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

bool valid_delivery_id(std::string_view id) {
  if (id.size() != 36 || id.substr(0, 4) != "msg_") return false;
  return std::all_of(id.begin() + 4, id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The entry is written with every delivery on the storage thread and read
// and rewritten for every attempt, so it is a small hand-rolled binary
// format rather than CBOR built through nlohmann::json (which cost ~45k
// instructions per entry): fixed-width little-endian integers, u32-length-
// prefixed strings (binary::Writer::fixed / str32), the event data as CBOR
// only when there is any.

std::string encode_delivery(const Delivery& d) {
  std::string out;
  out.reserve(128 + d.id.size() + d.webhook.size() + d.project.size() + d.request_id.size());
  out.push_back(kFormatVersion);
  binary::Writer w(out);
  w.str32(d.id);
  w.str32(d.webhook);
  w.str32(d.project);
  w.fixed(static_cast<std::uint8_t>(d.event));
  w.str32(d.request_id);
  w.str32(d.session_id);
  w.fixed(d.created_at_us);
  w.fixed(static_cast<std::uint8_t>(d.state));
  w.fixed(d.next_attempt_at_us);
  w.fixed(d.attempt_count);
  w.fixed(d.run_start);
  w.fixed(static_cast<std::uint8_t>(d.filter_deferred ? 1 : 0));
  w.fixed(static_cast<std::uint32_t>(d.attempts.size()));
  for (const auto& a : d.attempts) {
    w.fixed(a.at_us);
    w.fixed(static_cast<std::int32_t>(a.status));
    w.str32(a.error);
    w.fixed(a.duration_us);
  }
  std::string data;
  if (!(d.data.is_object() && d.data.empty())) json::to_cbor(d.data, data);
  w.str32(data);
  return out;
}

Expected<Delivery> decode_delivery(std::string_view bytes) {
  if (bytes.empty() || bytes[0] != kFormatVersion) {
    return storage_error("corrupt outbox entry: unknown format version");
  }
  binary::Reader r(bytes.substr(1));
  Delivery d;
  std::uint8_t event = 0, state = 0, deferred = 0;
  std::uint32_t attempts = 0;
  r.str32(d.id);
  r.str32(d.webhook);
  r.str32(d.project);
  r.fixed(event);
  r.str32(d.request_id);
  r.str32(d.session_id);
  r.fixed(d.created_at_us);
  r.fixed(state);
  r.fixed(d.next_attempt_at_us);
  r.fixed(d.attempt_count);
  r.fixed(d.run_start);
  r.fixed(deferred);
  r.fixed(attempts);
  if (attempts > kMaxStoredAttempts) r.fail("too many attempts");
  for (std::uint32_t i = 0; r.ok() && i < attempts; ++i) {
    DeliveryAttempt a;
    std::int32_t status = 0;
    r.fixed(a.at_us);
    r.fixed(status);
    r.str32(a.error);
    r.fixed(a.duration_us);
    a.status = status;
    d.attempts.push_back(std::move(a));
  }
  std::string data;
  r.str32(data);
  if (!r.ok() || !r.at_end()) return storage_error("corrupt outbox entry: truncated or malformed");
  if (event != 1 && event != 2 && event != 4) return storage_error("corrupt outbox entry: unknown event");
  if (state != 'p' && state != 'r' && state != 'd' && state != 'x') {
    return storage_error("corrupt outbox entry: unknown state");
  }
  d.event = static_cast<WebhookEvent>(event);
  d.state = static_cast<DeliveryState>(state);
  d.filter_deferred = deferred != 0;
  if (!data.empty()) {
    d.data = json::from_cbor(data, true, false);
    if (d.data.is_discarded()) return storage_error("corrupt outbox entry: bad event data");
  }
  return d;
}

json to_json(const Delivery& d) {
  json attempts = json::array();
  for (const auto& a : d.attempts) {
    attempts.push_back({{"at", format_iso8601_ms(a.at_us)},
                        {"status_code", a.status != 0 ? json(a.status) : json(nullptr)},
                        {"error", a.error.empty() ? json(nullptr) : json(sanitize_utf8(a.error))},
                        {"duration_ms", static_cast<double>(a.duration_us) / 1000.0}});
  }
  return {{"id", d.id},
          {"webhook", d.webhook},
          {"event", to_string(d.event)},
          {"request_id", d.request_id.empty() ? json(nullptr) : json(d.request_id)},
          {"session_id", d.session_id.empty() ? json(nullptr) : json(sanitize_utf8(d.session_id))},
          {"status", to_string(d.state)},
          {"created_at", format_iso8601_ms(d.created_at_us)},
          {"next_attempt_at",
           d.queued() ? json(format_iso8601_ms(d.next_attempt_at_us)) : json(nullptr)},
          {"attempt_count", d.attempt_count},
          {"attempts", std::move(attempts)}};
}

namespace outbox {

std::string delivery_key(std::string_view id) {
  std::string k = tagged('D');
  k.append(id);
  return k;
}
std::string queue_prefix(std::string_view webhook) {
  std::string k = tagged('Q');
  keys::append_part(k, webhook);
  return k;
}
std::string list_prefix(std::string_view project, std::string_view webhook) {
  std::string k = tagged('L');
  keys::append_part(k, project);
  keys::append_part(k, webhook);
  return k;
}
std::string state_prefix(std::string_view project, DeliveryState state, std::string_view webhook) {
  std::string k = tagged('S');
  keys::append_part(k, project);
  k.push_back(static_cast<char>(state));
  keys::append_part(k, webhook);
  return k;
}
std::string request_prefix(std::string_view project, std::string_view request_id) {
  std::string k = tagged('R');
  keys::append_part(k, project);
  keys::append_part(k, request_id);
  return k;
}
std::string counter_key(std::string_view project, std::string_view webhook) {
  std::string k = tagged('C');
  keys::append_part(k, project);
  keys::append_part(k, webhook);
  return k;
}

void append(const Store::Lease& db, rocksdb::WriteBatch& batch, const Delivery& d) {
  auto* cf = db.cf(ColumnFamily::kOutbox);
  // WriteBatch::Put only fails past the batch's size limit, which none of
  // ours sets; a failure would surface as the commit's error.
  (void)batch.Put(cf, delivery_key(d.id), encode_delivery(d));
  if (d.queued()) (void)batch.Put(cf, queue_key(d), rocksdb::Slice());
  (void)batch.Put(cf, list_key(d), rocksdb::Slice());
  (void)batch.Put(cf, state_key(d), rocksdb::Slice());
  if (!d.request_id.empty()) (void)batch.Put(cf, request_key(d), rocksdb::Slice());
  (void)batch.Put(cf, prune_key(d), rocksdb::Slice());
}

void update(const Store::Lease& db, rocksdb::WriteBatch& batch, const Delivery& before,
            const Delivery& after) {
  auto* cf = db.cf(ColumnFamily::kOutbox);
  (void)batch.Put(cf, delivery_key(after.id), encode_delivery(after));
  const bool queue_moved =
      before.queued() != after.queued() || before.next_attempt_at_us != after.next_attempt_at_us;
  if (queue_moved) {
    if (before.queued()) (void)batch.Delete(cf, queue_key(before));
    if (after.queued()) (void)batch.Put(cf, queue_key(after), rocksdb::Slice());
  }
  if (before.state != after.state) {
    (void)batch.Delete(cf, state_key(before));
    (void)batch.Put(cf, state_key(after), rocksdb::Slice());
  }
}

void remove(const Store::Lease& db, rocksdb::WriteBatch& batch, const Delivery& d) {
  auto* cf = db.cf(ColumnFamily::kOutbox);
  (void)batch.Delete(cf, delivery_key(d.id));
  if (d.queued()) (void)batch.Delete(cf, queue_key(d));
  (void)batch.Delete(cf, list_key(d));
  (void)batch.Delete(cf, state_key(d));
  if (!d.request_id.empty()) (void)batch.Delete(cf, request_key(d));
  (void)batch.Delete(cf, prune_key(d));
}

Expected<std::optional<Delivery>> load(const Store& store, std::string_view id) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  std::string value;
  const auto s = db.db().Get(rocksdb::ReadOptions(), db.cf(ColumnFamily::kOutbox),
                                slice(delivery_key(id)), &value);
  if (s.IsNotFound()) return std::optional<Delivery>();
  if (!s.ok()) return status_error("read outbox", s);
  auto d = decode_delivery(value);
  if (!d.ok()) return std::move(d).error();
  return std::optional<Delivery>(std::move(*d));
}

Expected<std::uint64_t> count(const Store& store, std::string_view prefix) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  rocksdb::ReadOptions ro;
  const std::string end = keys::prefix_end(prefix);
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(
      db.db().NewIterator(ro, db.cf(ColumnFamily::kOutbox)));
  std::uint64_t n = 0;
  for (it->Seek(slice(prefix)); it->Valid(); it->Next()) ++n;
  if (!it->status().ok()) return status_error("count outbox", it->status());
  return n;
}

Expected<std::uint64_t> delivered_total(const Store& store, std::string_view project,
                                        std::string_view webhook) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  std::string value;
  const auto s = db.db().Get(rocksdb::ReadOptions(), db.cf(ColumnFamily::kOutbox),
                                slice(counter_key(project, webhook)), &value);
  if (s.IsNotFound()) return std::uint64_t{0};
  if (!s.ok()) return status_error("read outbox counter", s);
  if (value.size() != 8) return storage_error("corrupt outbox counter");
  std::uint64_t n = 0;
  for (unsigned char c : value) n = (n << 8) | c;
  return n;
}

Expected<ListPage> list(const Store& store, std::string_view project, const ListQuery& q,
                        const std::vector<std::string>& webhooks) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  std::optional<Position> after;  // entries strictly older than this
  if (!q.cursor.empty()) {
    after = parse_cursor(q.cursor);
    if (!after) return invalid_argument("cursor is malformed (pass next_cursor as returned)");
  }
  const std::size_t limit = std::clamp<std::size_t>(q.limit, 1, 100);
  std::vector<Position> found;

  if (!q.request_id.empty()) {
    // One request has a handful of deliveries: read them all, then order.
    const std::string prefix = request_prefix(project, q.request_id);
    rocksdb::ReadOptions ro;
    const std::string end = keys::prefix_end(prefix);
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(
        db.db().NewIterator(ro, db.cf(ColumnFamily::kOutbox)));
    std::vector<Delivery> all;
    for (it->Seek(slice(prefix)); it->Valid(); it->Next()) {
      auto d = load(store, view(it->key()).substr(prefix.size()));
      if (!d.ok()) return std::move(d).error();
      if (!*d) continue;
      const Delivery& del = **d;
      if (q.state && del.state != *q.state) continue;
      if (!q.webhook.empty() && del.webhook != q.webhook) continue;
      if (std::find(webhooks.begin(), webhooks.end(), del.webhook) == webhooks.end()) continue;
      all.push_back(std::move(**d));
    }
    if (!it->status().ok()) return status_error("list outbox", it->status());
    std::sort(all.begin(), all.end(), [](const Delivery& a, const Delivery& b) {
      return Position{b.created_at_us, b.id} < Position{a.created_at_us, a.id};
    });
    ListPage page;
    for (auto& d : all) {
      if (after && !(Position{d.created_at_us, d.id} < *after)) continue;
      if (page.deliveries.size() == limit) {
        const Delivery& last = page.deliveries.back();
        page.next_cursor = format_cursor({last.created_at_us, last.id});
        break;
      }
      page.deliveries.push_back(std::move(d));
    }
    return page;
  }

  // Each webhook's entries are in their own key range, newest last: walk each
  // backwards from the cursor, take limit + 1, merge.
  for (const auto& w : webhooks) {
    if (!q.webhook.empty() && w != q.webhook) continue;
    const std::string prefix =
        q.state ? state_prefix(project, *q.state, w) : list_prefix(project, w);
    rocksdb::ReadOptions ro;
    rocksdb::Slice lower(prefix);
    ro.iterate_lower_bound = &lower;
    std::unique_ptr<rocksdb::Iterator> it(
        db.db().NewIterator(ro, db.cf(ColumnFamily::kOutbox)));
    if (after) {
      std::string from = prefix;
      keys::append_ts(from, after->ts);
      from.append(after->id);
      it->SeekForPrev(slice(from));
      if (it->Valid() && view(it->key()) == from) it->Prev();
    } else {
      it->SeekForPrev(slice(keys::prefix_end(prefix)));
    }
    std::size_t taken = 0;
    for (; it->Valid() && taken <= limit; it->Prev()) {
      const std::string_view key = view(it->key());
      if (!starts_with(key, prefix)) break;
      const std::string_view rest = key.substr(prefix.size());
      if (rest.size() < 8) return storage_error("corrupt outbox index key");
      found.push_back({keys::decode_ts(rest.substr(0, 8)), std::string(rest.substr(8))});
      ++taken;
    }
    if (!it->status().ok()) return status_error("list outbox", it->status());
  }
  std::sort(found.begin(), found.end(), [](const Position& a, const Position& b) { return b < a; });
  ListPage page;
  for (const auto& p : found) {
    if (page.deliveries.size() == limit) {
      const Delivery& last = page.deliveries.back();
      page.next_cursor = format_cursor({last.created_at_us, last.id});
      break;
    }
    auto d = load(store, p.id);
    if (!d.ok()) return std::move(d).error();
    if (!*d) continue;                                   // pruned meanwhile
    if (q.state && (*d)->state != *q.state) continue;  // moved on meanwhile
    page.deliveries.push_back(std::move(**d));
  }
  return page;
}

}  // namespace outbox

}  // namespace arbiter::scoring
