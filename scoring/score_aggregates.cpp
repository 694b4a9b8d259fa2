#include "scoring/score_aggregates.hpp"

#include <rocksdb/db.h>

#include <memory>

#include "scoring/keys.hpp"
#include "scoring/score_store.hpp"
#include "scoring/store.hpp"

namespace arbiter::scoring {

namespace {

std::int64_t hour_of(std::int64_t ts) {
  std::int64_t q = ts / ScoreAggregates::kHourUs;
  if (ts % ScoreAggregates::kHourUs != 0 && ts < 0) --q;
  return q * ScoreAggregates::kHourUs;
}

// Adds one delta to hours; returns the change in entry count.
long add_to(NameHistograms& hours, std::int64_t ts, double value, ScoreDataType type, int sign) {
  long entries = 0;
  const std::int64_t hour = hour_of(ts);
  auto [it, inserted] = hours.try_emplace(hour);
  if (inserted) ++entries;
  HourHistogram& h = it->second;
  if (type == ScoreDataType::kBoolean) {
    std::uint64_t& c = value != 0 ? h.bool_true : h.bool_false;
    if (sign > 0) {
      ++c;
    } else if (c > 0) {
      --c;
    }
  } else if (sign > 0) {
    auto [v, added] = h.numeric.try_emplace(value, 0);
    if (added) ++entries;
    ++v->second;
  } else if (auto v = h.numeric.find(value); v != h.numeric.end()) {
    if (--v->second == 0) {
      h.numeric.erase(v);
      --entries;
    }
  }
  if (h.empty()) {
    hours.erase(it);
    --entries;
  }
  return entries;
}

}  // namespace

void ScoreAggregates::apply_locked(Entry& e, const Delta& d) {
  const long change = add_to(e.hours, d.ts_us, d.value, d.data_type, d.sign);
  e.entries = static_cast<std::size_t>(static_cast<long>(e.entries) + change);
  total_entries_ = static_cast<std::size_t>(static_cast<long>(total_entries_) + change);
  if (e.entries > kMaxEntriesPerName || total_entries_ > kMaxEntriesTotal) {
    total_entries_ -= e.entries;
    e.hours.clear();
    e.entries = 0;
    e.state = Entry::State::kTooLarge;
  }
}

void ScoreAggregates::apply(const std::vector<Delta>& deltas) {
  std::lock_guard lk(mu_);
  for (const auto& d : deltas) {
    const auto it = names_.find({d.project, d.name});
    if (it == names_.end()) continue;  // not loaded: the load will read it from disk
    Entry& e = it->second;
    switch (e.state) {
      case Entry::State::kLoading:
        e.pending.push_back(d);
        break;
      case Entry::State::kReady:
        apply_locked(e, d);
        break;
      case Entry::State::kTooLarge:
        break;
    }
  }
}

void ScoreAggregates::invalidate() {
  std::lock_guard load(load_mu_);  // no load in progress
  std::lock_guard lk(mu_);
  names_.clear();
  total_entries_ = 0;
}

Expected<bool> ScoreAggregates::with_name(const Store& store, std::string_view project,
                                          std::string_view name,
                                          const std::function<void(const NameHistograms&)>& fn) {
  const std::pair<std::string, std::string> key{std::string(project), std::string(name)};
  auto ready = [&]() -> std::optional<bool> {
    std::lock_guard lk(mu_);
    const auto it = names_.find(key);
    if (it == names_.end() || it->second.state == Entry::State::kLoading) return std::nullopt;
    if (it->second.state == Entry::State::kTooLarge) return false;
    fn(it->second.hours);
    return true;
  };
  if (auto r = ready()) return *r;

  std::lock_guard load(load_mu_);
  if (auto r = ready()) return *r;
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;

  // Register as loading and take the snapshot with no writer between its
  // batch and its apply().
  const rocksdb::Snapshot* snapshot = nullptr;
  {
    std::unique_lock gate(gate_);
    std::lock_guard lk(mu_);
    names_[key] = Entry{};
    snapshot = db.db().GetSnapshot();
  }
  struct Release {
    const Store::Lease& db;
    const rocksdb::Snapshot* snapshot;
    ~Release() { db.db().ReleaseSnapshot(snapshot); }
  } release{db, snapshot};

  NameHistograms hours;
  long entries = 0;
  bool too_large = false;
  const std::string prefix = score_keys::time_prefix(project, name);
  const std::string upper = keys::prefix_end(prefix);
  const rocksdb::Slice lo(prefix);
  const rocksdb::Slice hi(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  ro.iterate_lower_bound = &lo;
  ro.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(
      db.db().NewIterator(ro, db.cf(ColumnFamily::kIdxScore)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view k(it->key().data(), it->key().size());
    const std::string_view v(it->value().data(), it->value().size());
    if (k.size() < prefix.size() + 8 || v.size() < 9 || static_cast<unsigned char>(v[0]) > 2) {
      continue;  // no value (unmapped category) or not ours
    }
    entries += add_to(hours, keys::decode_ts(k.substr(prefix.size(), 8)),
                      score_keys::decode_sortable(v.substr(1, 8)),
                      static_cast<ScoreDataType>(static_cast<unsigned char>(v[0])), +1);
    if (static_cast<std::size_t>(entries) > kMaxEntriesPerName) {
      too_large = true;
      break;
    }
  }
  const rocksdb::Status status = it->status();

  std::lock_guard lk(mu_);
  Entry& e = names_[key];
  if (!status.ok()) {
    names_.erase(key);  // a later query retries
    return status_error("load score histograms", status);
  }
  if (too_large || total_entries_ + static_cast<std::size_t>(entries) > kMaxEntriesTotal) {
    e.state = Entry::State::kTooLarge;
    e.pending.clear();
    return false;
  }
  e.hours = std::move(hours);
  e.entries = static_cast<std::size_t>(entries);
  total_entries_ += e.entries;
  e.state = Entry::State::kReady;
  std::vector<Delta> pending = std::move(e.pending);
  e.pending.clear();
  for (const auto& d : pending) {
    if (e.state == Entry::State::kReady) apply_locked(e, d);
  }
  if (e.state != Entry::State::kReady) return false;
  fn(e.hours);
  return true;
}

}  // namespace arbiter::scoring
