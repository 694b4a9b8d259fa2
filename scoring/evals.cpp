#include "scoring/evals.hpp"

#include <rocksdb/db.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "scoring/keys.hpp"
#include "scoring/score_store.hpp"
#include "scoring/store.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

constexpr std::int64_t kHourUs = 3'600'000'000LL;
constexpr std::int64_t kDayUs = 24 * kHourUs;
constexpr std::int64_t kWeekUs = 7 * kDayUs;

bool has_score_leaf(const FilterNode& n) {
  if (n.kind == FilterNode::Kind::kLeaf) return n.leaf.field == FilterField::kScore;
  return std::any_of(n.children.begin(), n.children.end(), has_score_leaf);
}

std::int64_t floor_to(std::int64_t ts, std::int64_t width) {
  std::int64_t q = ts / width;
  if (ts % width != 0 && ts < 0) --q;
  return q * width;
}

using GroupName = std::pair<std::string, std::string>;  // (group, name)

// One scanned or histogram-derived observation: `count` scores with this
// value, at ts (for histograms: the hour start, which lands in the same
// overTime bucket as every score of that hour).
struct Observation {
  std::int64_t ts_us = 0;
  double value = 0;
  ScoreDataType data_type = ScoreDataType::kNumeric;
  std::uint64_t count = 1;
};

// Scans one name's 'T' entries in [lo, hi) (nullopt = unbounded).
template <class Visit>
Expected<void> scan_name(const Store::Lease& db, std::string_view project, const std::string& name,
                         std::optional<std::int64_t> lo_us, std::optional<std::int64_t> hi_us,
                         const rocksdb::Snapshot* snapshot, Visit&& visit) {
  const std::string prefix = score_keys::time_prefix(project, name);
  std::string lower = prefix;
  if (lo_us) keys::append_ts(lower, *lo_us);
  std::string upper = keys::prefix_end(prefix);
  if (hi_us) {
    upper = prefix;
    keys::append_ts(upper, *hi_us);
  }
  if (lower >= upper) return {};
  const rocksdb::Slice lo(lower);
  const rocksdb::Slice hi(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  ro.iterate_lower_bound = &lo;
  ro.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(
      db.db().NewIterator(ro, db.cf(ColumnFamily::kIdxScore)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    const std::string_view value(it->value().data(), it->value().size());
    if (auto ok = visit(key, prefix.size(), value); !ok) return ok;
  }
  if (!it->status().ok()) return status_error("scan score index", it->status());
  return {};
}

// Walks every valued score of the project in range that passes the filter,
// calling sink(group, name, observation). Without filter and groupBy, and
// with `aggregates`, whole hours come from the hourly histograms and only the
// partial hours at the range's edges are scanned.
template <class Sink>
Expected<void> for_each_score(const Store& store, std::string_view project, const EvalQuery& q,
                              ScoreAggregates* aggregates, Sink&& sink) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  auto names = score_names(store, project);
  if (!names.ok()) return std::move(names).error();
  SnapshotGuard snapshot(db);
  const bool needs_record =
      q.filter.kind != FilterNode::Kind::kAll || q.group_by != EvalGroupBy::kNone;
  const bool needs_scores = has_score_leaf(q.filter);
  // Request → group key (nullopt: filtered out or not stored).
  std::unordered_map<std::string, std::optional<std::string>> verdicts;

  // The fast visitor: time from the key, value from the payload; the target
  // is not even parsed.
  auto fast = [&](const std::string& name) {
    return [&sink, &name](std::string_view key, std::size_t prefix_len,
                          std::string_view value) -> Expected<void> {
      if (key.size() < prefix_len + 8 || value.size() < 9) return {};
      const auto type = static_cast<unsigned char>(value[0]);
      if (type > 2) return {};
      sink(std::string_view(), name,
           Observation{keys::decode_ts(key.substr(prefix_len, 8)),
                       score_keys::decode_sortable(value.substr(1, 8)),
                       static_cast<ScoreDataType>(type), 1});
      return {};
    };
  };
  auto joined = [&](const std::string& name) {
    return [&, &name = name](std::string_view key, std::size_t prefix_len,
                             std::string_view value) -> Expected<void> {
      auto e = score_keys::parse_time_entry(key, prefix_len, value);
      if (!e || !e->value || e->target.kind != 'r') return {};
      auto [slot, inserted] = verdicts.try_emplace(e->target.id);
      if (inserted) {
        auto rec = store.get(project, e->target.id, false, snapshot.get());
        if (!rec.ok()) return std::move(rec).error();
        if (*rec) {
          RequestRecord& r = **rec;
          if (needs_scores) {
            if (auto ok = attach_score_data(db, r, snapshot.get()); !ok) return ok;
          }
          if (matches(q.filter, r)) {
            switch (q.group_by) {
              case EvalGroupBy::kNone:
                slot->second = std::string();
                break;
              case EvalGroupBy::kModel:
                slot->second = r.model();
                break;
              case EvalGroupBy::kUserId:
                slot->second = r.user_id;
                break;
              case EvalGroupBy::kProperty: {
                const auto p = r.properties.find(q.group_key);
                slot->second = p == r.properties.end() ? std::string() : p->second;
                break;
              }
            }
          }
        }
      }
      if (!slot->second) return {};
      sink(std::string_view(*slot->second), name,
           Observation{e->ts_us, *e->value, e->data_type, 1});
      return {};
    };
  };

  for (const auto& name : *names) {
    if (needs_record) {
      if (auto ok =
              scan_name(db, project, name, q.start_us, q.end_us, snapshot.get(), joined(name));
          !ok) {
        return ok;
      }
      continue;
    }
    // Whole hours inside [start, end): [full_lo, full_hi).
    constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    const std::int64_t full_lo =
        q.start_us ? floor_to(*q.start_us, kHourUs) +
                         (floor_to(*q.start_us, kHourUs) == *q.start_us ? 0 : kHourUs)
                   : kMin;
    const std::int64_t full_hi = q.end_us ? floor_to(*q.end_us, kHourUs) : kMax;
    Expected<bool> used = false;
    if (aggregates != nullptr && full_lo < full_hi) {
      used = aggregates->with_name(store, project, name, [&](const NameHistograms& hours) {
        auto it = full_lo == kMin ? hours.begin() : hours.lower_bound(full_lo);
        for (; it != hours.end() && it->first < full_hi; ++it) {
          const HourHistogram& h = it->second;
          if (h.bool_false != 0)
            sink(std::string_view(), name,
                 Observation{it->first, 0, ScoreDataType::kBoolean, h.bool_false});
          if (h.bool_true != 0)
            sink(std::string_view(), name,
                 Observation{it->first, 1, ScoreDataType::kBoolean, h.bool_true});
          for (const auto& [v, c] : h.numeric) {
            sink(std::string_view(), name, Observation{it->first, v, ScoreDataType::kNumeric, c});
          }
        }
      });
      if (!used.ok()) return std::move(used).error();
    }
    if (*used) {
      // The partial hours at the edges, from the index.
      if (q.start_us && *q.start_us < full_lo) {
        if (auto ok =
                scan_name(db, project, name, q.start_us, full_lo, snapshot.get(), fast(name));
            !ok)
          return ok;
      }
      if (q.end_us && full_hi < *q.end_us) {
        if (auto ok =
                scan_name(db, project, name, full_hi, q.end_us, snapshot.get(), fast(name));
            !ok)
          return ok;
      }
    } else if (auto ok = scan_name(db, project, name, q.start_us, q.end_us, snapshot.get(),
                                   fast(name));
               !ok) {
      return ok;
    }
  }
  return {};
}

json group_fields(const EvalQuery& q, const std::string& group, json entry) {
  if (q.group_by != EvalGroupBy::kNone) entry["group"] = sanitize_utf8(group);
  return entry;
}

}  // namespace

std::int64_t eval_bucket_us(std::int64_t span_us) {
  if (span_us <= 7 * kDayUs) return kHourUs;
  if (span_us <= 180 * kDayUs) return kDayUs;
  return kWeekUs;
}

Expected<EvalQuery> parse_eval_query(const json& body, bool distribution) {
  if (!body.is_object()) return invalid_argument("request body must be a JSON object");
  EvalQuery q;
  for (const auto& [key, v] : body.items()) {
    if (key == "filter") {
      auto f = parse_filter(v);
      if (!f.ok()) return std::move(f).error();
      q.filter = std::move(f).value();
    } else if (key == "timeFilter") {
      if (v.is_null()) continue;
      if (!v.is_object()) return invalid_argument("timeFilter must be {\"start\", \"end\"}");
      for (const auto& [tk, tv] : v.items()) {
        if (tk != "start" && tk != "end") {
          return invalid_argument("unknown key '" + sanitize_utf8(tk) + "' in timeFilter");
        }
        if (tv.is_null()) continue;
        const auto ts = tv.is_string() ? parse_iso8601(tv.get<std::string>()) : std::nullopt;
        if (!ts) return invalid_argument("timeFilter." + tk + " must be an ISO-8601 timestamp");
        (tk == "start" ? q.start_us : q.end_us) = *ts;
      }
      if (q.start_us && q.end_us && *q.start_us >= *q.end_us) {
        return invalid_argument("timeFilter.start must be before timeFilter.end");
      }
    } else if (key == "groupBy") {
      if (v.is_null()) continue;
      if (!v.is_string()) return invalid_argument("groupBy must be a string");
      const auto& g = v.get_ref<const std::string&>();
      if (g == "model") {
        q.group_by = EvalGroupBy::kModel;
      } else if (g == "user_id") {
        q.group_by = EvalGroupBy::kUserId;
      } else if (g.starts_with("properties.") && g.size() > 11) {
        q.group_by = EvalGroupBy::kProperty;
        q.group_key = g.substr(11);
        for (char& c : q.group_key) {
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        }
      } else {
        return invalid_argument(
            "groupBy must be \"model\", \"user_id\" or \"properties.<key>\", got '" +
            sanitize_utf8(g) + "'");
      }
    } else if (key == "buckets" && distribution) {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 100) {
        return invalid_argument("buckets must be an integer between 1 and 100");
      }
      q.buckets = static_cast<std::size_t>(v.get<std::int64_t>());
    } else if (key == "timeZoneDifference" || key == "offset" || key == "limit") {
      // Sent by Helicone's client; buckets are UTC here.
    } else {
      return invalid_argument("unknown key '" + sanitize_utf8(key) + "' in query body");
    }
  }
  return q;
}

Expected<json> run_eval_query(const Store& store, std::string_view project, const EvalQuery& q,
                              ScoreAggregates* aggregates) {
  if (!store.is_open()) return unavailable("storage is closed");
  struct Bucket {
    std::uint64_t count = 0;
    double sum = 0;
  };
  struct Acc {
    std::uint64_t count = 0;
    double sum = 0;
    double min = std::numeric_limits<double>::infinity();
    double max = -std::numeric_limits<double>::infinity();
    std::map<std::int64_t, Bucket> hours;  // hour start → bucket
    std::int64_t last_hour = std::numeric_limits<std::int64_t>::min();
    Bucket* last_bucket = nullptr;
  };
  std::map<GroupName, Acc> accs;
  std::int64_t first_ts = std::numeric_limits<std::int64_t>::max();
  std::int64_t last_ts = std::numeric_limits<std::int64_t>::min();
  GroupName last_key;
  Acc* last_acc = nullptr;
  auto r = for_each_score(
      store, project, q, aggregates,
      [&](std::string_view group, const std::string& name, const Observation& o) {
        if (last_acc == nullptr || last_key.second != name || last_key.first != group) {
          last_key = GroupName(std::string(group), name);
          last_acc = &accs[last_key];
        }
        Acc& a = *last_acc;
        const double c = static_cast<double>(o.count);
        a.count += o.count;
        a.sum += o.value * c;
        a.min = std::min(a.min, o.value);
        a.max = std::max(a.max, o.value);
        const std::int64_t hour = floor_to(o.ts_us, kHourUs);
        if (hour != a.last_hour || a.last_bucket == nullptr) {
          a.last_hour = hour;
          a.last_bucket = &a.hours[hour];
        }
        a.last_bucket->count += o.count;
        a.last_bucket->sum += o.value * c;
        first_ts = std::min(first_ts, o.ts_us);
        last_ts = std::max(last_ts, o.ts_us);
      });
  if (!r.ok()) return std::move(r).error();

  const std::int64_t span =
      q.start_us && q.end_us ? *q.end_us - *q.start_us
      : accs.empty()
          ? 0
          : std::max<std::int64_t>(0, q.end_us.value_or(last_ts) - q.start_us.value_or(first_ts));
  const std::int64_t width = eval_bucket_us(span);
  json out = json::array();
  for (const auto& [key, a] : accs) {
    std::map<std::int64_t, Bucket> buckets;
    for (const auto& [hour, b] : a.hours) {
      Bucket& dst = buckets[floor_to(hour, width)];
      dst.count += b.count;
      dst.sum += b.sum;
    }
    json over_time = json::array();
    json average_over_time = json::array();
    for (const auto& [start, b] : buckets) {
      const std::string date = format_iso8601_ms(start);
      over_time.push_back({{"date", date}, {"count", b.count}});
      average_over_time.push_back(
          {{"date", date}, {"value", b.sum / static_cast<double>(b.count)}});
    }
    out.push_back(group_fields(q, key.first,
                               {{"name", sanitize_utf8(key.second)},
                                {"averageScore", a.sum / static_cast<double>(a.count)},
                                {"minScore", a.min},
                                {"maxScore", a.max},
                                {"count", a.count},
                                {"overTime", std::move(over_time)},
                                {"averageOverTime", std::move(average_over_time)}}));
  }
  // Sorted by name, then group (the map's order is group first).
  std::stable_sort(out.begin(), out.end(), [](const json& x, const json& y) {
    return x["name"].get_ref<const std::string&>() < y["name"].get_ref<const std::string&>();
  });
  return out;
}

Expected<json> run_score_distribution(const Store& store, std::string_view project,
                                      const EvalQuery& q, ScoreAggregates* aggregates) {
  if (!store.is_open()) return unavailable("storage is closed");
  struct Acc {
    std::map<double, std::uint64_t> counts;  // value → how many
    std::uint64_t total = 0;
    bool all_boolean = true;
  };
  std::map<GroupName, Acc> accs;
  GroupName last_key;
  Acc* last_acc = nullptr;
  auto r = for_each_score(
      store, project, q, aggregates,
      [&](std::string_view group, const std::string& name, const Observation& o) {
        if (last_acc == nullptr || last_key.second != name || last_key.first != group) {
          last_key = GroupName(std::string(group), name);
          last_acc = &accs[last_key];
        }
        last_acc->counts[o.value] += o.count;
        last_acc->total += o.count;
        if (o.data_type != ScoreDataType::kBoolean) last_acc->all_boolean = false;
      });
  if (!r.ok()) return std::move(r).error();

  json out = json::array();
  for (const auto& [key, a] : accs) {
    json dist = json::array();
    if (a.all_boolean) {
      const auto t = a.counts.find(1.0);
      const std::uint64_t trues = t == a.counts.end() ? 0 : t->second;
      dist.push_back({{"lower", 0}, {"upper", 0}, {"value", a.total - trues}});
      dist.push_back({{"lower", 1}, {"upper", 1}, {"value", trues}});
    } else {
      const double lo = a.counts.begin()->first;
      const double hi = a.counts.rbegin()->first;
      if (lo == hi) {
        dist.push_back({{"lower", lo}, {"upper", hi}, {"value", a.total}});
      } else {
        const std::size_t n = q.buckets;
        const double width = (hi - lo) / static_cast<double>(n);
        std::vector<std::uint64_t> counts(n, 0);
        for (const auto& [v, c] : a.counts) {
          auto i = static_cast<std::size_t>(std::floor((v - lo) / width));
          counts[std::min(i, n - 1)] += c;  // the last bucket is closed: max lands in it
        }
        for (std::size_t i = 0; i < n; ++i) {
          const double lower = lo + width * static_cast<double>(i);
          const double upper = i + 1 == n ? hi : lo + width * static_cast<double>(i + 1);
          dist.push_back({{"lower", lower}, {"upper", upper}, {"value", counts[i]}});
        }
      }
    }
    out.push_back(group_fields(
        q, key.first, {{"name", sanitize_utf8(key.second)}, {"distribution", std::move(dist)}}));
  }
  std::stable_sort(out.begin(), out.end(), [](const json& x, const json& y) {
    return x["name"].get_ref<const std::string&>() < y["name"].get_ref<const std::string&>();
  });
  return out;
}

}  // namespace arbiter::scoring
