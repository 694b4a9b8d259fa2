#include "scoring/eval_runs.hpp"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <memory>

#include "scoring/binary_codec.hpp"
#include "scoring/keys.hpp"
#include "scoring/request_record.hpp"
#include "scoring/store.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

// Bumped when the encoding changes incompatibly; decode refuses what it does
// not know instead of misreading it.
constexpr int kRunFormatV1 = 1;  // CBOR, read only (decode_run_v1)

constexpr std::array<std::string_view, 5> kStateNames = {"pending", "waiting-for-fields", "running",
                                                          "completed", "error"};

std::string_view view(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

std::string tagged_key(char tag, std::string_view project, std::string_view request_id,
                       std::string_view evaluator) {
  std::string k(1, tag);
  keys::append_part(k, project);
  keys::append_part(k, request_id);
  keys::append_part(k, evaluator);
  return k;
}

std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

template <class T>
bool get(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  try {
    out = it->get<T>();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::string be64(std::int64_t v) {
  std::string out(8, '\0');
  const auto u = static_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((u >> (56 - 8 * i)) & 0xFF);
  return out;
}

std::int64_t from_be64(std::string_view b) {
  if (b.size() != 8) return 0;  // an entry from before the timestamp was kept
  std::uint64_t u = 0;
  for (unsigned char c : b) u = (u << 8) | c;
  return static_cast<std::int64_t>(u);
}

}  // namespace

std::string_view to_string(RunState state) {
  return kStateNames[static_cast<std::size_t>(state)];
}

std::optional<RunState> parse_run_state(std::string_view text) {
  for (std::size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == text) return static_cast<RunState>(i);
  }
  return std::nullopt;
}

namespace run_keys {

std::string run(std::string_view project, std::string_view request_id, std::string_view evaluator) {
  return tagged_key('R', project, request_id, evaluator);
}

std::string active(std::string_view project, std::string_view request_id,
                   std::string_view evaluator) {
  return tagged_key('P', project, request_id, evaluator);
}

std::string request_prefix(std::string_view project, std::string_view request_id) {
  std::string k(1, 'R');
  keys::append_part(k, project);
  keys::append_part(k, request_id);
  return k;
}

std::string active_prefix() {
  return "P";
}

std::optional<ActiveRef> parse_active(std::string_view key) {
  if (key.empty() || key[0] != 'P') return std::nullopt;
  key.remove_prefix(1);
  ActiveRef ref;
  if (!keys::read_part(key, ref.project) || !keys::read_part(key, ref.request_id) ||
      !keys::read_part(key, ref.evaluator) || !key.empty()) {
    return std::nullopt;
  }
  return ref;
}

}  // namespace run_keys

std::string derived_id(std::initializer_list<std::string_view> parts) {
  // Two independent 64-bit FNV-1a streams (different offset bases); each part
  // is followed by a 0x00 separator so ("ab", "c") and ("a", "bc") differ.
  std::uint64_t a = 14695981039346656037ULL;
  std::uint64_t b = 0x6c62272e07bb0142ULL;
  for (std::string_view p : parts) {
    a = fnv1a(fnv1a(a, p), std::string_view("\0", 1));
    b = fnv1a(fnv1a(b, std::string_view("\x5a", 1)), p);
    b = fnv1a(b, std::string_view("\0", 1));
  }
  // Spread b's bits a little more: FNV's low bits mix poorly.
  b ^= b >> 29;
  b *= 0xbf58476d1ce4e5b9ULL;
  b ^= b >> 32;
  // The layout of "%08x-%04x-8%03x-%04x-%012llx" of a's high 32 bits, the
  // next 16, the low 12 (after the version digit 8), then 0x8000 | b's top 14
  // bits and b's low 48 bits, written without printf (two per evaluator run).
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(36, '-');
  auto put = [&](std::size_t at, std::uint64_t v, int digits) {
    for (int k = digits - 1; k >= 0; --k, v >>= 4)
      id[at + static_cast<std::size_t>(k)] = kHex[v & 0xF];
  };
  put(0, a >> 32, 8);
  put(9, (a >> 16) & 0xFFFF, 4);
  id[14] = '8';
  put(15, a & 0xFFF, 3);
  put(19, 0x8000 | ((b >> 48) & 0x3FFF), 4);
  put(24, b & 0xFFFFFFFFFFFFULL, 12);
  return id;
}

// Version 2 (the first byte; a version-1 value starts with a CBOR map byte,
// 0xA0 and up): the fields in this order — strings length-prefixed, times
// zigzag varints, then a flags byte and the scores as embedded CBOR only when
// there are any (binary_codec.hpp).
constexpr std::uint8_t kRunFormatV2 = 2;
constexpr std::uint8_t kRunManual = 1;
constexpr std::uint8_t kRunHasScores = 2;

std::string encode_run(const EvalRun& r) {
  std::string out;
  out.reserve(96 + r.id.size() + r.project.size() + r.request_id.size() + r.evaluator.size() + r.error.size());
  binary::Writer w(out);
  w.u8(kRunFormatV2);
  w.str(r.id);
  w.str(r.project);
  w.str(r.request_id);
  w.str(r.evaluator);
  w.u8(static_cast<std::uint8_t>(r.state));
  w.varint(r.attempts);
  w.svarint(r.created_us);
  w.svarint(r.started_us);
  w.svarint(r.finished_us);
  w.svarint(r.duration_us);
  w.svarint(r.next_attempt_us);
  w.str(r.error);
  w.varint(r.missing.size());
  for (const auto& m : r.missing) w.str(m);
  const bool has_scores = r.scores.is_array() && !r.scores.empty();
  w.u8(static_cast<std::uint8_t>((r.manual ? kRunManual : 0) | (has_scores ? kRunHasScores : 0)));
  if (has_scores) w.cbor(r.scores);
  return out;
}

namespace {

// Version 1: a CBOR map with its version inside ("v": 1).
Expected<EvalRun> decode_run_v1(std::string_view bytes) {
  const json j = binary::parse_cbor_bounded(bytes);
  if (j.is_discarded() || !j.is_object()) return storage_error("corrupt evaluator run: bad CBOR");
  int version = 0;
  if (!get(j, "v", version) || version != kRunFormatV1) {
    return storage_error("corrupt evaluator run: unknown format version");
  }
  EvalRun r;
  int state = 0;
  const bool ok = get(j, "id", r.id) && get(j, "pj", r.project) && get(j, "rq", r.request_id) &&
                  get(j, "ev", r.evaluator) && get(j, "st", state) && get(j, "at", r.attempts) &&
                  get(j, "ca", r.created_us) && get(j, "sa", r.started_us) &&
                  get(j, "fa", r.finished_us) && get(j, "du", r.duration_us) &&
                  get(j, "na", r.next_attempt_us) && get(j, "er", r.error) &&
                  get(j, "mi", r.missing) && get(j, "mn", r.manual);
  if (!ok || state < 0 || state >= static_cast<int>(kStateNames.size())) {
    return storage_error("corrupt evaluator run: field of the wrong type");
  }
  r.state = static_cast<RunState>(state);
  if (auto it = j.find("sc"); it != j.end() && it->is_array()) r.scores = *it;
  return r;
}

}  // namespace

Expected<EvalRun> decode_run(std::string_view bytes) {
  if (bytes.empty()) return storage_error("corrupt evaluator run: empty value");
  if (static_cast<std::uint8_t>(bytes[0]) != kRunFormatV2) return decode_run_v1(bytes);
  binary::Reader in(bytes.substr(1));
  EvalRun r;
  in.str(r.id);
  in.str(r.project);
  in.str(r.request_id);
  in.str(r.evaluator);
  const std::uint8_t state = in.u8();
  const std::uint64_t attempts = in.varint();
  r.created_us = in.svarint();
  r.started_us = in.svarint();
  r.finished_us = in.svarint();
  r.duration_us = in.svarint();
  r.next_attempt_us = in.svarint();
  in.str(r.error);
  const std::uint64_t missing = in.varint();
  if (missing > in.remaining()) in.fail("missing count exceeds the value");
  for (std::uint64_t k = 0; k < missing && in.ok(); ++k) in.str(r.missing.emplace_back());
  const std::uint8_t flags = in.u8();
  r.manual = (flags & kRunManual) != 0;
  if ((flags & kRunHasScores) != 0) in.cbor(r.scores);
  if (!in.ok()) return storage_error(std::string("corrupt evaluator run: ") + in.error());
  if (!in.at_end()) return storage_error("corrupt evaluator run: trailing bytes");
  if (state >= kStateNames.size() || attempts > std::numeric_limits<std::uint32_t>::max() ||
      (flags & ~(kRunManual | kRunHasScores)) != 0 || !r.scores.is_array()) {
    return storage_error("corrupt evaluator run: field out of range");
  }
  r.state = static_cast<RunState>(state);
  r.attempts = static_cast<std::uint32_t>(attempts);
  return r;
}

json to_json(const EvalRun& r) {
  auto time = [](std::int64_t us) { return us == 0 ? json(nullptr) : json(format_iso8601_ms(us)); };
  json j = {{"id", r.id},
            {"evaluator", sanitize_utf8(r.evaluator)},
            {"request_id", sanitize_utf8(r.request_id)},
            {"state", to_string(r.state)},
            {"attempts", r.attempts},
            {"created_at", time(r.created_us)},
            {"started_at", time(r.started_us)},
            {"finished_at", time(r.finished_us)},
            {"duration_ms", static_cast<double>(r.duration_us) / 1000.0},
            {"error", r.error.empty() ? json(nullptr) : json(sanitize_utf8(r.error))},
            {"scores", r.scores.is_array() ? r.scores : json::array()},
            {"manual", r.manual}};
  if (r.state == RunState::kWaiting) j["missing"] = r.missing;
  if (r.state == RunState::kPending && r.next_attempt_us != 0) {
    j["next_attempt_at"] = time(r.next_attempt_us);
  }
  return j;
}

Expected<void> put_run(const Store::Lease& db, rocksdb::WriteBatch& batch, const EvalRun& r) {
  auto* cf = db.cf(ColumnFamily::kEvalRuns);
  rocksdb::Status s = batch.Put(cf, run_keys::run(r.project, r.request_id, r.evaluator), encode_run(r));
  const std::string active = run_keys::active(r.project, r.request_id, r.evaluator);
  if (s.ok()) {
    s = is_finished(r.state) ? batch.Delete(cf, active) : batch.Put(cf, active, be64(r.created_us));
  }
  if (!s.ok()) return status_error("build evaluator run batch", s);
  return {};
}

Expected<void> put_pending(const Store::Lease& db, rocksdb::WriteBatch& batch, std::string_view project,
                           std::string_view request_id, std::string_view evaluator,
                           std::int64_t created_us) {
  const rocksdb::Status s = batch.Put(db.cf(ColumnFamily::kEvalRuns),
                                      run_keys::active(project, request_id, evaluator), be64(created_us));
  if (!s.ok()) return status_error("build evaluator run batch", s);
  return {};
}

EvalRun pending_run(std::string_view project, std::string_view request_id, std::string_view evaluator,
                    std::int64_t created_us) {
  EvalRun r;
  r.id = derived_id({project, request_id, evaluator});
  r.project = std::string(project);
  r.request_id = std::string(request_id);
  r.evaluator = std::string(evaluator);
  r.state = RunState::kPending;
  r.created_us = created_us;
  return r;
}

Expected<std::optional<EvalRun>> read_run(const Store& store, std::string_view project,
                                          std::string_view request_id, std::string_view evaluator) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  rocksdb::PinnableSlice value;
  auto* cf = db.cf(ColumnFamily::kEvalRuns);
  std::optional<EvalRun> stored;
  rocksdb::Status s =
      db.db().Get(rocksdb::ReadOptions(), cf, run_keys::run(project, request_id, evaluator), &value);
  if (s.ok()) {
    auto run = decode_run(view(value));
    if (!run.ok()) return std::move(run).error();
    if (!is_finished(run->state)) return std::optional<EvalRun>(std::move(run).value());
    stored = std::move(run).value();
  } else if (!s.IsNotFound()) {
    return status_error("read evaluator run", s);
  }
  // Only scheduled so far, or scheduled again after it finished (its record
  // was logged anew): a 'P' entry without an unfinished 'R'.
  value.Reset();
  s = db.db().Get(rocksdb::ReadOptions(), cf, run_keys::active(project, request_id, evaluator), &value);
  if (s.IsNotFound()) return stored;
  if (!s.ok()) return status_error("read evaluator run", s);
  return std::optional<EvalRun>(pending_run(project, request_id, evaluator, from_be64(view(value))));
}

Expected<std::vector<EvalRun>> runs_for_request(const Store& store, std::string_view project,
                                                std::string_view request_id) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  // Both prefixes of the request, read from one snapshot.
  SnapshotGuard snapshot(db);
  std::map<std::string, EvalRun> by_evaluator;
  for (char tag : {'R', 'P'}) {
    std::string prefix(1, tag);
    keys::append_part(prefix, project);
    keys::append_part(prefix, request_id);
    const std::string upper = keys::prefix_end(prefix);
    const rocksdb::Slice lo(prefix);
    const rocksdb::Slice hi(upper);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.get();
    ro.iterate_lower_bound = &lo;
    ro.iterate_upper_bound = &hi;
    std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, db.cf(ColumnFamily::kEvalRuns)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (tag == 'R') {
        auto run = decode_run(view(it->value()));
        if (!run.ok()) return std::move(run).error();
        std::string name = run->evaluator;
        by_evaluator.insert_or_assign(std::move(name), std::move(run).value());
      } else if (auto ref = run_keys::parse_active(view(it->key()))) {
        // A marker without an unfinished run: scheduled (again).
        auto at = by_evaluator.find(ref->evaluator);
        if (at == by_evaluator.end() || is_finished(at->second.state)) {
          by_evaluator.insert_or_assign(ref->evaluator, pending_run(project, request_id, ref->evaluator,
                                                                    from_be64(view(it->value()))));
        }
      }
    }
    if (!it->status().ok()) return status_error("scan evaluator runs", it->status());
  }
  std::vector<EvalRun> out;
  out.reserve(by_evaluator.size());
  for (auto& [name, run] : by_evaluator) out.push_back(std::move(run));
  return out;
}

Expected<std::uint64_t> delete_request_runs(const Store::Lease& db, rocksdb::WriteBatch& batch,
                                            std::string_view project, std::string_view request_id) {
  std::uint64_t runs = 0;
  auto* cf = db.cf(ColumnFamily::kEvalRuns);
  for (char tag : {'R', 'P'}) {
    std::string prefix(1, tag);
    keys::append_part(prefix, project);
    keys::append_part(prefix, request_id);
    const std::string upper = keys::prefix_end(prefix);
    const rocksdb::Slice lo(prefix);
    const rocksdb::Slice hi(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo;
    ro.iterate_upper_bound = &hi;
    std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocksdb::Status s = batch.Delete(cf, it->key());
      if (!s.ok()) return status_error("retention batch", s);
      if (tag == 'R') ++runs;
    }
    if (!it->status().ok()) return status_error("scan evaluator runs", it->status());
  }
  return runs;
}

Expected<std::vector<run_keys::ActiveRef>> scan_active(const Store& store, std::string& next,
                                                       std::size_t limit) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  const std::string prefix = run_keys::active_prefix();
  const std::string upper = keys::prefix_end(prefix);
  const rocksdb::Slice hi(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, db.cf(ColumnFamily::kEvalRuns)));
  if (next.empty()) {
    it->Seek(prefix);
  } else {
    it->Seek(next);
    if (it->Valid() && view(it->key()) == next) it->Next();
  }
  std::vector<run_keys::ActiveRef> out;
  for (; it->Valid() && out.size() < limit; it->Next()) {
    const std::string_view key = view(it->key());
    next.assign(key);
    if (auto ref = run_keys::parse_active(key)) out.push_back(std::move(*ref));
  }
  if (!it->status().ok()) return status_error("scan unfinished evaluator runs", it->status());
  if (!it->Valid()) next.clear();
  return out;
}

}  // namespace arbiter::scoring
