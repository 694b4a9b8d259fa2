#include "scoring/query.hpp"

#include <rocksdb/db.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>

#include "scoring/keys.hpp"
#include "scoring/score_store.hpp"
#include "scoring/store.hpp"

namespace arbiter::scoring {

namespace {

enum class FieldType { kText, kNumber, kTimestamp, kScore };

struct FieldSpec {
  std::string_view name;
  FilterField field;
  FieldType type;
};

// properties.<k> and scores.<k> are recognised by their prefix.
constexpr std::array<FieldSpec, 15> kFields = {{
    {"request_id", FilterField::kRequestId, FieldType::kText},
    {"model", FilterField::kModel, FieldType::kText},
    {"user_id", FilterField::kUserId, FieldType::kText},
    {"session_id", FilterField::kSessionId, FieldType::kText},
    {"path", FilterField::kPath, FieldType::kText},
    {"provider", FilterField::kProvider, FieldType::kText},
    {"status", FilterField::kStatus, FieldType::kNumber},
    {"latency", FilterField::kLatency, FieldType::kNumber},
    {"time_to_first_token", FilterField::kTimeToFirstToken, FieldType::kNumber},
    {"prompt_tokens", FilterField::kPromptTokens, FieldType::kNumber},
    {"completion_tokens", FilterField::kCompletionTokens, FieldType::kNumber},
    {"total_tokens", FilterField::kTotalTokens, FieldType::kNumber},
    {"cost", FilterField::kCost, FieldType::kNumber},
    {"request_created_at", FilterField::kRequestCreatedAt, FieldType::kTimestamp},
    {"response_created_at", FilterField::kResponseCreatedAt, FieldType::kTimestamp},
}};

struct OpSpec {
  std::string_view name;
  FilterOp op;
};

constexpr std::array<OpSpec, 10> kOps = {{
    {"equals", FilterOp::kEquals},
    {"not-equals", FilterOp::kNotEquals},
    {"gt", FilterOp::kGt},
    {"gte", FilterOp::kGte},
    {"lt", FilterOp::kLt},
    {"lte", FilterOp::kLte},
    {"contains", FilterOp::kContains},
    {"not-contains", FilterOp::kNotContains},
    {"like", FilterOp::kLike},
    {"ilike", FilterOp::kIlike},
}};

bool op_allowed(FieldType type, FilterOp op) {
  const bool textual = op == FilterOp::kContains || op == FilterOp::kNotContains ||
                       op == FilterOp::kLike || op == FilterOp::kIlike;
  const bool ordering =
      op == FilterOp::kGt || op == FilterOp::kGte || op == FilterOp::kLt || op == FilterOp::kLte;
  switch (type) {
    case FieldType::kText:
      return !ordering;
    case FieldType::kNumber:
    case FieldType::kTimestamp:
    case FieldType::kScore:
      return !textual;
  }
  return false;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

char lower_char(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string type_name(const nlohmann::json& v) {
  return v.type_name();
}

Expected<FilterLeaf> parse_leaf_value(std::string_view field_label, FieldType type, FilterLeaf leaf,
                                      std::string_view op_name, const nlohmann::json& v) {
  const std::string where =
      "filter value for '" + std::string(field_label) + "' (" + std::string(op_name) + ")";
  switch (type) {
    case FieldType::kText:
      if (!v.is_string()) return invalid_argument(where + " must be a string, got " + type_name(v));
      leaf.value = v.get<std::string>();
      return leaf;
    case FieldType::kNumber:
      if (!v.is_number()) return invalid_argument(where + " must be a number, got " + type_name(v));
      leaf.value = v.get<double>();
      return leaf;
    case FieldType::kTimestamp: {
      if (!v.is_string()) {
        return invalid_argument(where + " must be an ISO-8601 timestamp string, got " +
                                type_name(v));
      }
      const auto ts = parse_iso8601(v.get_ref<const std::string&>());
      if (!ts) {
        return invalid_argument(where + " is not an ISO-8601 timestamp: '" +
                                sanitize_utf8(v.get_ref<const std::string&>()) + "'");
      }
      leaf.value = *ts;
      return leaf;
    }
    case FieldType::kScore:
      // Helicone's clients send scores as numbers, booleans or numeric text.
      if (v.is_boolean()) {
        leaf.value = v.get<bool>() ? 1.0 : 0.0;
      } else if (v.is_number()) {
        leaf.value = v.get<double>();
      } else if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(d)) {
          return invalid_argument(where + " must be a number or boolean, got '" + sanitize_utf8(s) +
                                  "'");
        }
        leaf.value = d;
      } else {
        return invalid_argument(where + " must be a number or boolean, got " + type_name(v));
      }
      return leaf;
  }
  return invalid_argument(where + " has an unsupported type");
}

FilterNode make_leaf(FilterLeaf leaf) {
  FilterNode n;
  n.kind = FilterNode::Kind::kLeaf;
  n.leaf = std::move(leaf);
  return n;
}

// and/or with "all" simplified away and nested same-kind nodes flattened, so
// that the planner sees one AND chain.
FilterNode combine(FilterNode::Kind kind, FilterNode a, FilterNode b) {
  if (kind == FilterNode::Kind::kAnd) {
    if (a.kind == FilterNode::Kind::kAll) return b;
    if (b.kind == FilterNode::Kind::kAll) return a;
  } else {
    if (a.kind == FilterNode::Kind::kAll || b.kind == FilterNode::Kind::kAll) return FilterNode{};
  }
  FilterNode n;
  n.kind = kind;
  for (FilterNode* side : {&a, &b}) {
    if (side->kind == kind) {
      for (auto& c : side->children) n.children.push_back(std::move(c));
    } else {
      n.children.push_back(std::move(*side));
    }
  }
  return n;
}

// Parses {<op>: value, ...} for one field; appends one leaf per operator.
Expected<void> parse_ops(std::string_view label, FieldType type, FilterLeaf base,
                         const nlohmann::json& ops, std::vector<FilterLeaf>& out) {
  if (!ops.is_object()) {
    return invalid_argument("filter on '" + std::string(label) +
                            "' must be an object of operators, e.g. {\"equals\": ...}");
  }
  if (ops.empty())
    return invalid_argument("filter on '" + std::string(label) + "' has no operator");
  for (const auto& [op_name, value] : ops.items()) {
    // Init-captures below: clang 14 (the fuzz build) cannot capture a structured binding.
    const auto spec =
        std::find_if(kOps.begin(), kOps.end(), [&op = op_name](const OpSpec& o) { return o.name == op; });
    if (spec == kOps.end() || !op_allowed(type, spec->op)) {
      return invalid_argument("unsupported operator '" + sanitize_utf8(op_name) + "' for field '" +
                              std::string(label) + "'");
    }
    FilterLeaf leaf = base;
    leaf.op = spec->op;
    auto parsed = parse_leaf_value(label, type, std::move(leaf), op_name, value);
    if (!parsed.ok()) return std::move(parsed).error();
    out.push_back(std::move(parsed).value());
  }
  return {};
}

// {"<name>": {<op>: v}} under "properties" / "scores", or a "properties.<k>" field.
Expected<void> parse_named(std::string_view group, FilterField field, FieldType type,
                           std::string_view name, const nlohmann::json& ops,
                           std::vector<FilterLeaf>& out) {
  if (name.empty()) return invalid_argument("empty " + std::string(group) + " name in filter");
  FilterLeaf base;
  base.field = field;
  // Property keys are stored lower-cased (header names are case-insensitive).
  base.key = field == FilterField::kProperty ? ascii_lower(name) : std::string(name);
  const std::string label = std::string(group) + "." + sanitize_utf8(name);
  return parse_ops(label, type, std::move(base), ops, out);
}

Expected<FilterNode> parse_node(const nlohmann::json& j, std::size_t depth) {
  if (depth > kMaxFilterDepth) {
    return invalid_argument("filter is nested deeper than " + std::to_string(kMaxFilterDepth));
  }
  if (j.is_null()) return FilterNode{};
  if (j.is_string()) {
    if (j.get_ref<const std::string&>() == "all") return FilterNode{};
    return invalid_argument("filter must be \"all\", a leaf or a branch, got the string '" +
                            sanitize_utf8(j.get_ref<const std::string&>()) + "'");
  }
  if (!j.is_object()) {
    return invalid_argument("filter must be \"all\", a leaf or a branch, got " + type_name(j));
  }
  if (j.empty()) return FilterNode{};  // Helicone's own examples send {}

  if (j.contains("operator") || j.contains("left") || j.contains("right")) {
    for (const auto& [k, v] : j.items()) {
      if (k != "left" && k != "right" && k != "operator") {
        return invalid_argument("unknown key '" + sanitize_utf8(k) + "' in filter branch");
      }
    }
    if (!j.contains("left") || !j.contains("right") || !j.contains("operator")) {
      return invalid_argument("filter branch needs \"left\", \"operator\" and \"right\"");
    }
    const auto& op = j.at("operator");
    if (!op.is_string() || (op != "and" && op != "or")) {
      return invalid_argument("unsupported filter operator " + sanitize_utf8(op.dump()) +
                              " (expected \"and\" or \"or\")");
    }
    auto left = parse_node(j.at("left"), depth + 1);
    if (!left.ok()) return left;
    auto right = parse_node(j.at("right"), depth + 1);
    if (!right.ok()) return right;
    return combine(op == "and" ? FilterNode::Kind::kAnd : FilterNode::Kind::kOr,
                   std::move(left).value(), std::move(right).value());
  }

  std::vector<FilterLeaf> leaves;
  for (const auto& [table, fields] : j.items()) {
    if (table == "properties") {
      // Helicone's leaf may also name properties as a table of its own:
      // {"properties": {"env": {"equals": "prod"}}}.
      if (!fields.is_object() || fields.empty()) {
        return invalid_argument("filter on 'properties' must be an object of names");
      }
      for (const auto& [sub, sub_ops] : fields.items()) {
        auto r = parse_named("properties", FilterField::kProperty, FieldType::kText, sub, sub_ops,
                             leaves);
        if (!r.ok()) return std::move(r).error();
      }
      continue;
    }
    if (table != "request_response_rmt") {
      return invalid_argument("unknown filter table '" + sanitize_utf8(table) +
                              "' (only request_response_rmt and properties are supported)");
    }
    if (!fields.is_object() || fields.empty()) {
      return invalid_argument("filter table 'request_response_rmt' must be an object of fields");
    }
    for (const auto& [name, ops] : fields.items()) {
      Expected<void> r;
      if (name == "properties" || name == "scores") {
        const bool props = name == "properties";
        if (!ops.is_object() || ops.empty()) {
          return invalid_argument("filter on '" + name + "' must be an object of names");
        }
        for (const auto& [sub, sub_ops] : ops.items()) {
          r = parse_named(name, props ? FilterField::kProperty : FilterField::kScore,
                          props ? FieldType::kText : FieldType::kScore, sub, sub_ops, leaves);
          if (!r.ok()) return std::move(r).error();
        }
        continue;
      }
      if (name.starts_with("properties.")) {
        r = parse_named("properties", FilterField::kProperty, FieldType::kText,
                        std::string_view(name).substr(11), ops, leaves);
      } else if (name.starts_with("scores.")) {
        r = parse_named("scores", FilterField::kScore, FieldType::kScore,
                        std::string_view(name).substr(7), ops, leaves);
      } else {
        const auto spec = std::find_if(kFields.begin(), kFields.end(),
                                       [&field = name](const FieldSpec& f) { return f.name == field; });
        if (spec == kFields.end()) {
          return invalid_argument("unknown filter field '" + sanitize_utf8(name) + "'");
        }
        FilterLeaf base;
        base.field = spec->field;
        r = parse_ops(spec->name, spec->type, std::move(base), ops, leaves);
      }
      if (!r.ok()) return std::move(r).error();
    }
  }
  FilterNode node = make_leaf(std::move(leaves[0]));
  for (std::size_t i = 1; i < leaves.size(); ++i) {
    node = combine(FilterNode::Kind::kAnd, std::move(node), make_leaf(std::move(leaves[i])));
  }
  return node;
}

// Integral JSON number (10 or 10.0) within [lo, hi].
std::optional<std::int64_t> integer_in(const nlohmann::json& v, std::int64_t lo, std::int64_t hi) {
  std::int64_t n = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) {
      return std::nullopt;
    }
    n = v.get<std::int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::floor(d) != d) {
      return std::nullopt;
    }
    n = static_cast<std::int64_t>(d);
  } else {
    return std::nullopt;
  }
  if (n < lo || n > hi) return std::nullopt;
  return n;
}

// ---- evaluation ----

bool contains_ci(std::string_view text, std::string_view needle) {
  if (needle.empty()) return true;
  const auto it = std::search(text.begin(), text.end(), needle.begin(), needle.end(),
                              [](char a, char b) { return lower_char(a) == lower_char(b); });
  return it != text.end();
}

std::size_t char_len(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t len = 1;
  if (b >= 0xF0 && b <= 0xF4) {
    len = 4;
  } else if (b >= 0xE0) {
    len = b <= 0xEF ? 3 : 1;
  } else if (b >= 0xC2) {
    len = 2;
  }
  return std::min(len, s.size() - i);
}

std::string_view text_of(const FilterLeaf& leaf, const RequestRecord& r) {
  switch (leaf.field) {
    case FilterField::kRequestId:
      return r.request_id;
    case FilterField::kModel:
      return r.model();
    case FilterField::kUserId:
      return r.user_id;
    case FilterField::kSessionId:
      return r.session_id;
    case FilterField::kPath:
      return r.path;
    case FilterField::kProvider:
      return r.upstream;
    case FilterField::kProperty: {
      const auto it = r.properties.find(leaf.key);
      return it == r.properties.end() ? std::string_view() : std::string_view(it->second);
    }
    default:
      return {};
  }
}

std::optional<double> number_of(const FilterLeaf& leaf, const RequestRecord& r) {
  auto opt = [](const std::optional<std::int64_t>& v) -> std::optional<double> {
    if (!v) return std::nullopt;
    return static_cast<double>(*v);
  };
  switch (leaf.field) {
    case FilterField::kStatus:
      return static_cast<double>(r.status);
    case FilterField::kLatency:
      return r.latency_ms;
    case FilterField::kTimeToFirstToken:
      return r.time_to_first_token_ms;
    case FilterField::kPromptTokens:
      return opt(r.prompt_tokens);
    case FilterField::kCompletionTokens:
      return opt(r.completion_tokens);
    case FilterField::kTotalTokens:
      return opt(r.total_tokens);
    case FilterField::kCost:
      return r.cost_usd;
    default:
      return std::nullopt;
  }
}

std::optional<double> score_number(const RequestRecord& r, const std::string& name) {
  if (!r.scores.is_object()) return std::nullopt;
  const auto it = r.scores.find(name);
  if (it == r.scores.end()) return std::nullopt;
  if (it->is_boolean()) return it->get<bool>() ? 1.0 : 0.0;
  if (it->is_number()) return it->get<double>();
  return std::nullopt;
}

template <class T>
bool compare(FilterOp op, const T& a, const T& b) {
  switch (op) {
    case FilterOp::kEquals:
      return a == b;
    case FilterOp::kNotEquals:
      return a != b;
    case FilterOp::kGt:
      return a > b;
    case FilterOp::kGte:
      return a >= b;
    case FilterOp::kLt:
      return a < b;
    case FilterOp::kLte:
      return a <= b;
    default:
      return false;
  }
}

bool leaf_matches(const FilterLeaf& leaf, const RequestRecord& r) {
  switch (leaf.field) {
    case FilterField::kRequestId:
    case FilterField::kModel:
    case FilterField::kUserId:
    case FilterField::kSessionId:
    case FilterField::kPath:
    case FilterField::kProvider:
    case FilterField::kProperty: {
      const std::string_view text = text_of(leaf, r);
      const auto& want = std::get<std::string>(leaf.value);
      switch (leaf.op) {
        case FilterOp::kEquals:
          return text == want;
        case FilterOp::kNotEquals:
          return text != want;
        case FilterOp::kContains:
          return contains_ci(text, want);
        case FilterOp::kNotContains:
          return !contains_ci(text, want);
        case FilterOp::kLike:
          return like_match(text, want, false);
        case FilterOp::kIlike:
          return like_match(text, want, true);
        default:
          return false;
      }
    }
    case FilterField::kStatus:
    case FilterField::kLatency:
    case FilterField::kTimeToFirstToken:
    case FilterField::kPromptTokens:
    case FilterField::kCompletionTokens:
    case FilterField::kTotalTokens:
    case FilterField::kCost: {
      const auto v = number_of(leaf, r);
      return v && compare(leaf.op, *v, std::get<double>(leaf.value));
    }
    case FilterField::kRequestCreatedAt:
      return compare(leaf.op, r.created_at_us, std::get<std::int64_t>(leaf.value));
    case FilterField::kResponseCreatedAt:
      return r.response_at_us != 0 &&
             compare(leaf.op, r.response_at_us, std::get<std::int64_t>(leaf.value));
    case FilterField::kScore: {
      // record.scores holds what attach_score_data read; a missing score, or
      // a label without a value, matches no operator (SQL NULL).
      const auto v = score_number(r, leaf.key);
      return v && compare(leaf.op, *v, std::get<double>(leaf.value));
    }
  }
  return false;
}

// ---- execution ----

struct TimeBounds {
  std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  bool bounded() const {
    return lo != std::numeric_limits<std::int64_t>::min() ||
           hi != std::numeric_limits<std::int64_t>::max();
  }
  bool empty() const { return lo > hi; }
};

// Narrows bounds by one request_created_at leaf; false when the op is not a range.
bool narrow(TimeBounds& b, const FilterLeaf& leaf) {
  if (leaf.field != FilterField::kRequestCreatedAt) return false;
  const auto v = std::get<std::int64_t>(leaf.value);
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  switch (leaf.op) {
    case FilterOp::kEquals:
      b.lo = std::max(b.lo, v);
      b.hi = std::min(b.hi, v);
      return true;
    case FilterOp::kGt:
      if (v == kMax) {
        b.lo = kMax;
        b.hi = kMin;  // empty
      } else {
        b.lo = std::max(b.lo, v + 1);
      }
      return true;
    case FilterOp::kGte:
      b.lo = std::max(b.lo, v);
      return true;
    case FilterOp::kLt:
      if (v == kMin) {
        b.lo = kMax;
        b.hi = kMin;
      } else {
        b.hi = std::min(b.hi, v - 1);
      }
      return true;
    case FilterOp::kLte:
      b.hi = std::min(b.hi, v);
      return true;
    default:
      return false;
  }
}

// Iterates the entries of one index prefix within a created_at range, in
// time order (or reverse), over a snapshot.
class IndexCursor {
 public:
  IndexCursor(const Store::Lease& db, ColumnFamily cf, std::string prefix, const TimeBounds& bounds,
              bool reverse, const rocksdb::Snapshot* snapshot)
      : db_(db), prefix_(std::move(prefix)), reverse_(reverse) {
    lower_ = prefix_;
    keys::append_ts(lower_, bounds.lo);
    if (bounds.hi == std::numeric_limits<std::int64_t>::max()) {
      upper_ = keys::prefix_end(prefix_);
    } else {
      upper_ = prefix_;
      keys::append_ts(upper_, bounds.hi + 1);
    }
    lower_slice_ = rocksdb::Slice(lower_);
    upper_slice_ = rocksdb::Slice(upper_);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    ro.iterate_lower_bound = &lower_slice_;
    ro.iterate_upper_bound = &upper_slice_;
    it_.reset(db_.db().NewIterator(ro, db_.cf(cf)));
    if (reverse_) {
      it_->SeekForPrev(upper_slice_);
      // SeekForPrev lands on a key <= upper; the bound is exclusive.
      if (it_->Valid() && it_->key().compare(upper_slice_) >= 0) it_->Prev();
    } else {
      it_->Seek(lower_slice_);
    }
  }

  // Next entry, nullopt at the end; check status() afterwards.
  std::optional<keys::IndexEntry> next() {
    while (it_->Valid()) {
      const std::string_view key(it_->key().data(), it_->key().size());
      current_.assign(key);
      if (reverse_) {
        it_->Prev();
      } else {
        it_->Next();
      }
      if (current_.compare(0, prefix_.size(), prefix_) != 0) return std::nullopt;
      if (auto e = keys::parse_entry(current_, prefix_.size())) return e;
      // A malformed key cannot name a record; skip it.
    }
    return std::nullopt;
  }

  rocksdb::Status status() const { return it_->status(); }

 private:
  Store::Lease db_;  // outlives it_
  std::string prefix_;
  std::string lower_;
  std::string upper_;
  rocksdb::Slice lower_slice_;
  rocksdb::Slice upper_slice_;
  bool reverse_;
  std::unique_ptr<rocksdb::Iterator> it_;
  std::string current_;  // the entry's id points into this
};

struct Source {
  std::string plan;  // for QueryStats
  ColumnFamily cf = ColumnFamily::kIdxTime;
  std::string prefix;
};

// Planner probes read at most this many entries per candidate index: enough
// to tell a selective index from an unselective one, cheap either way.
constexpr std::uint64_t kProbeCap = 1000;

std::optional<double> sort_value(SortKey key, const std::string& score_name,
                                 const RequestRecord& r) {
  auto opt = [](const std::optional<std::int64_t>& v) -> std::optional<double> {
    if (!v) return std::nullopt;
    return static_cast<double>(*v);
  };
  switch (key) {
    case SortKey::kCreatedAt:
      return static_cast<double>(r.created_at_us);
    case SortKey::kLatency:
      return r.latency_ms;
    case SortKey::kCost:
      return r.cost_usd;
    case SortKey::kPromptTokens:
      return opt(r.prompt_tokens);
    case SortKey::kCompletionTokens:
      return opt(r.completion_tokens);
    case SortKey::kTotalTokens:
      return opt(r.total_tokens);
    case SortKey::kScore:
      return score_number(r, score_name);
  }
  return std::nullopt;
}

bool has_score_leaf(const FilterNode& n) {
  if (n.kind == FilterNode::Kind::kLeaf) return n.leaf.field == FilterField::kScore;
  return std::any_of(n.children.begin(), n.children.end(), has_score_leaf);
}

// The idx_score 'V' key range [lower, upper) of one scores.<k> comparison;
// nullopt when the operator is not a range (not-equals).
std::optional<std::pair<std::string, std::string>> score_range(std::string_view project,
                                                               const FilterLeaf& leaf) {
  const std::string prefix = score_keys::value_prefix(project, leaf.key);
  std::string at = prefix;
  score_keys::append_sortable(at, std::get<double>(leaf.value));
  switch (leaf.op) {
    case FilterOp::kEquals:
      return std::pair(at, keys::prefix_end(at));
    case FilterOp::kGt:
      return std::pair(keys::prefix_end(at), keys::prefix_end(prefix));
    case FilterOp::kGte:
      return std::pair(at, keys::prefix_end(prefix));
    case FilterOp::kLt:
      return std::pair(prefix, at);
    case FilterOp::kLte:
      return std::pair(prefix, keys::prefix_end(at));
    default:
      return std::nullopt;
  }
}

// Request-level request ids in one 'V' range, in value order; stops after
// `cap` ids (0 = no cap).
Expected<std::vector<std::string>> score_range_ids(const Store::Lease& db, const std::string& lower,
                                                   const std::string& upper, std::size_t prefix_len,
                                                   std::uint64_t cap,
                                                   const rocksdb::Snapshot* snapshot) {
  std::vector<std::string> ids;
  const rocksdb::Slice lo(lower);
  const rocksdb::Slice hi(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  ro.iterate_lower_bound = &lo;
  ro.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, db.cf(ColumnFamily::kIdxScore)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view rest(it->key().data(), it->key().size());
    if (rest.size() < prefix_len + 8) continue;
    rest.remove_prefix(prefix_len + 8);
    auto target = score_keys::parse_target(rest);
    if (!target || target->kind != 'r' || !target->observation_id.empty()) continue;
    ids.push_back(std::move(target->id));
    if (cap != 0 && ids.size() >= cap) break;
  }
  if (!it->status().ok()) return status_error("query scan idx_score", it->status());
  return ids;
}

struct Ranked {
  std::optional<double> value;
  std::int64_t created_at_us = 0;
  std::string id;
};

// True when a ranks before b: by value in the requested direction with
// unknown values last, then newest first, then by id.
struct RanksBefore {
  bool descending;
  bool operator()(const Ranked& a, const Ranked& b) const {
    if (a.value.has_value() != b.value.has_value()) return a.value.has_value();
    if (a.value && *a.value != *b.value)
      return descending ? *a.value > *b.value : *a.value < *b.value;
    if (a.created_at_us != b.created_at_us) return a.created_at_us > b.created_at_us;
    return a.id < b.id;
  }
};

}  // namespace

bool like_match(std::string_view text, std::string_view pat, bool ci) {
  auto eq = [ci](char a, char b) { return ci ? lower_char(a) == lower_char(b) : a == b; };
  constexpr auto npos = std::string_view::npos;
  std::size_t t = 0, p = 0, star_p = npos, star_t = 0;
  while (t < text.size()) {
    if (p < pat.size()) {
      const char c = pat[p];
      if (c == '%') {
        star_p = ++p;
        star_t = t;
        continue;
      }
      if (c == '_') {
        t += char_len(text, t);
        ++p;
        continue;
      }
      std::size_t plen = 1;
      char literal = c;
      if (c == '\\' && p + 1 < pat.size()) {
        literal = pat[p + 1];
        plen = 2;
      }
      if (eq(text[t], literal)) {
        ++t;
        p += plen;
        continue;
      }
    }
    if (star_p == npos) return false;
    // Let the last '%' swallow one more character and retry from there.
    star_t += char_len(text, star_t);
    t = star_t;
    p = star_p;
  }
  while (p < pat.size() && pat[p] == '%') ++p;
  return p == pat.size();
}

bool matches(const FilterNode& n, const RequestRecord& r) {
  switch (n.kind) {
    case FilterNode::Kind::kAll:
      return true;
    case FilterNode::Kind::kLeaf:
      return leaf_matches(n.leaf, r);
    case FilterNode::Kind::kAnd:
      return std::all_of(n.children.begin(), n.children.end(),
                         [&](const FilterNode& c) { return matches(c, r); });
    case FilterNode::Kind::kOr:
      return std::any_of(n.children.begin(), n.children.end(),
                         [&](const FilterNode& c) { return matches(c, r); });
  }
  return false;
}

Expected<FilterNode> parse_filter(const nlohmann::json& filter) {
  return parse_node(filter, 0);
}

Expected<RequestQuery> parse_request_query(const nlohmann::json& body) {
  if (!body.is_object()) return invalid_argument("query body must be a JSON object");
  RequestQuery q;
  for (const auto& [key, value] : body.items()) {
    if (key == "filter") {
      auto f = parse_filter(value);
      if (!f.ok()) return std::move(f).error();
      q.filter = std::move(f).value();
    } else if (key == "sort") {
      if (value.is_null()) continue;
      if (!value.is_object())
        return invalid_argument("sort must be an object, e.g. {\"created_at\": \"desc\"}");
      if (value.size() > 1) return invalid_argument("sort takes one key");
      for (const auto& [sort_key, dir] : value.items()) {
        static constexpr std::array<std::pair<std::string_view, SortKey>, 6> kSorts = {{
            {"created_at", SortKey::kCreatedAt},
            {"latency", SortKey::kLatency},
            {"cost", SortKey::kCost},
            {"prompt_tokens", SortKey::kPromptTokens},
            {"completion_tokens", SortKey::kCompletionTokens},
            {"total_tokens", SortKey::kTotalTokens},
        }};
        const auto it = std::find_if(kSorts.begin(), kSorts.end(),
                                     [&key = sort_key](const auto& s) { return s.first == key; });
        const bool by_score = sort_key.starts_with("scores.") && sort_key.size() > 7;
        if (it == kSorts.end() && !by_score) {
          return invalid_argument("unsupported sort key '" + sanitize_utf8(sort_key) +
                                  "' (expected one of created_at, latency, cost, prompt_tokens, "
                                  "completion_tokens, total_tokens, scores.<name>)");
        }
        if (!dir.is_string() || (dir != "asc" && dir != "desc")) {
          return invalid_argument("sort direction for '" + sort_key +
                                  "' must be \"asc\" or \"desc\"");
        }
        if (by_score) {
          q.sort = SortKey::kScore;
          q.sort_score = sort_key.substr(7);
        } else {
          q.sort = it->second;
        }
        q.descending = dir == "desc";
      }
    } else if (key == "limit") {
      const auto n = integer_in(value, 1, static_cast<std::int64_t>(kMaxLimit));
      if (!n) return invalid_argument("limit must be an integer between 1 and 1000");
      q.limit = static_cast<std::size_t>(*n);
    } else if (key == "offset") {
      const auto n = integer_in(value, 0, static_cast<std::int64_t>(kMaxOffset));
      if (!n) return invalid_argument("offset must be an integer between 0 and 1000000");
      q.offset = static_cast<std::size_t>(*n);
    } else if (key == "isCached" || key == "includeInputs" || key == "isPartOfExperiment" ||
               key == "isScored") {
      // Sent by Helicone's client; nothing in arbiter corresponds to them.
    } else {
      return invalid_argument("unknown key '" + sanitize_utf8(key) + "' in query body");
    }
  }
  return q;
}

Expected<std::vector<RequestRecord>> execute_query(const Store& store, std::string_view project,
                                                   const RequestQuery& query,
                                                   QueryStats* stats_out) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  QueryStats local_stats;
  QueryStats& stats = stats_out != nullptr ? *stats_out : local_stats;
  stats = QueryStats{};
  std::vector<RequestRecord> out;
  if (project.empty()) return out;

  // Leaves every match must satisfy: the root leaf, or the root AND's leaves.
  std::vector<const FilterLeaf*> required;
  if (query.filter.kind == FilterNode::Kind::kLeaf) {
    required.push_back(&query.filter.leaf);
  } else if (query.filter.kind == FilterNode::Kind::kAnd) {
    for (const auto& c : query.filter.children) {
      if (c.kind == FilterNode::Kind::kLeaf) required.push_back(&c.leaf);
    }
  }

  TimeBounds bounds;
  for (const auto* leaf : required) narrow(bounds, *leaf);
  if (bounds.empty()) {
    stats.plan = "empty";
    return out;
  }

  SnapshotGuard snapshot(db);
  const bool needs_scores = has_score_leaf(query.filter) || query.sort == SortKey::kScore;
  // Fills record.scores when the filter or the sort reads them.
  auto with_scores = [&](RequestRecord& r) -> Expected<void> {
    if (!needs_scores) return {};
    return attach_score_data(db, r, snapshot.get());
  };

  // request_id equality: one point lookup.
  for (const auto* leaf : required) {
    if (leaf->field == FilterField::kRequestId && leaf->op == FilterOp::kEquals) {
      stats.plan = "request_id";
      auto got = store.get(project, std::get<std::string>(leaf->value), false, snapshot.get());
      if (!got.ok()) return std::move(got).error();
      if (*got) {
        ++stats.records_examined;
        if (auto ok = with_scores(**got); !ok) return std::move(ok).error();
        if (matches(query.filter, **got) && query.offset == 0) out.push_back(std::move(**got));
      }
      return out;
    }
  }

  // Candidate sources: equality on an indexed field, else the time index.
  std::vector<Source> sources;
  for (const auto* leaf : required) {
    if (leaf->op != FilterOp::kEquals) continue;
    const auto* value = std::get_if<std::string>(&leaf->value);
    // Empty values are not indexed (and a missing property reads as "").
    if (value == nullptr || value->empty()) continue;
    switch (leaf->field) {
      case FilterField::kUserId:
        sources.push_back({"idx_user", ColumnFamily::kIdxUser, keys::user_prefix(project, *value)});
        break;
      case FilterField::kSessionId:
        sources.push_back(
            {"idx_session", ColumnFamily::kIdxSession, keys::session_prefix(project, *value)});
        break;
      case FilterField::kModel:
        sources.push_back(
            {"idx_model", ColumnFamily::kIdxModel, keys::model_prefix(project, *value)});
        break;
      case FilterField::kProperty:
        sources.push_back({"idx_property", ColumnFamily::kIdxProperty,
                           keys::property_prefix(project, leaf->key, *value)});
        break;
      default:
        break;
    }
  }
  Source time_source{"idx_time", ColumnFamily::kIdxTime, keys::time_prefix(project)};
  Source chosen = time_source;
  std::uint64_t best = std::numeric_limits<std::uint64_t>::max();
  // A scores.<k> range: the 'V' index yields the matching requests directly.
  const FilterLeaf* score_leaf = nullptr;
  std::optional<std::pair<std::string, std::string>> score_bounds;
  for (const auto* leaf : required) {
    if (leaf->field != FilterField::kScore) continue;
    if (auto range = score_range(project, *leaf)) {
      score_leaf = leaf;
      score_bounds = std::move(range);
      break;
    }
  }
  std::uint64_t score_count = std::numeric_limits<std::uint64_t>::max();
  if (score_leaf != nullptr) {
    auto probe = score_range_ids(db, score_bounds->first, score_bounds->second,
                                 score_keys::value_prefix(project, score_leaf->key).size(),
                                 kProbeCap, snapshot.get());
    if (!probe.ok()) return std::move(probe).error();
    score_count = probe->size();
    stats.index_entries_scanned += score_count;
  }
  if (!sources.empty() || score_leaf != nullptr) {
    // The time index competes when bounded, or as the only alternative.
    if (bounds.bounded() || sources.empty()) sources.push_back(time_source);
    for (auto& s : sources) {
      IndexCursor probe(db, s.cf, s.prefix, bounds, false, snapshot.get());
      std::uint64_t count = 0;
      while (count < kProbeCap && probe.next()) ++count;
      if (!probe.status().ok()) return status_error("query probe " + s.plan, probe.status());
      stats.index_entries_scanned += count;
      if (count < best) {
        best = count;
        chosen = s;
      }
    }
  }
  const bool use_score_index = score_leaf != nullptr && score_count < best;
  stats.plan = use_score_index ? "idx_score" : chosen.plan;

  // Keeps the best offset+limit matches for sorts the index order does not
  // give (the heap's top is the worst of them).
  const std::size_t keep = query.offset + query.limit;
  const RanksBefore before{query.descending};
  std::vector<Ranked> ranked;  // a heap under `before`: front() is the worst kept
  auto consider = [&](const RequestRecord& r) {
    Ranked candidate{sort_value(query.sort, query.sort_score, r), r.created_at_us, r.request_id};
    if (ranked.size() < keep) {
      ranked.push_back(std::move(candidate));
      std::push_heap(ranked.begin(), ranked.end(), before);
    } else if (before(candidate, ranked.front())) {
      std::pop_heap(ranked.begin(), ranked.end(), before);
      ranked.back() = std::move(candidate);
      std::push_heap(ranked.begin(), ranked.end(), before);
    }
  };
  // Reads the page's records again from the snapshot, best first.
  auto finish_ranked = [&]() -> Expected<std::vector<RequestRecord>> {
    std::sort_heap(ranked.begin(), ranked.end(), before);
    for (std::size_t i = query.offset; i < ranked.size(); ++i) {
      auto got = store.get(project, ranked[i].id, false, snapshot.get());
      if (!got.ok()) return std::move(got).error();
      if (*got) {
        if (auto ok = with_scores(**got); !ok) return std::move(ok).error();
        out.push_back(std::move(**got));
      }
    }
    return std::move(out);
  };

  if (use_score_index) {
    auto ids = score_range_ids(db, score_bounds->first, score_bounds->second,
                               score_keys::value_prefix(project, score_leaf->key).size(), 0,
                               snapshot.get());
    if (!ids.ok()) return std::move(ids).error();
    stats.index_entries_scanned += ids->size();
    for (const auto& id : *ids) {
      auto got = store.get(project, id, false, snapshot.get());
      if (!got.ok()) return std::move(got).error();
      if (!*got) continue;
      ++stats.records_examined;
      if (auto ok = with_scores(**got); !ok) return std::move(ok).error();
      if (matches(query.filter, **got)) consider(**got);
    }
    return finish_ranked();
  }

  const bool time_sorted = query.sort == SortKey::kCreatedAt;
  const bool reverse = time_sorted ? query.descending : true;
  IndexCursor cursor(db, chosen.cf, chosen.prefix, bounds, reverse, snapshot.get());
  const bool no_filter = query.filter.kind == FilterNode::Kind::kAll;

  // Reads the record an entry points at; nullopt when gone or stale.
  auto load = [&](const keys::IndexEntry& e) -> Expected<std::optional<RequestRecord>> {
    auto got = store.get(project, e.id, false, snapshot.get());
    if (!got.ok()) return got;
    ++stats.records_examined;
    if (*got && (*got)->created_at_us != e.ts_us) return std::optional<RequestRecord>{};
    if (*got) {
      if (auto ok = with_scores(**got); !ok) return std::move(ok).error();
    }
    return got;
  };

  if (time_sorted) {
    std::size_t to_skip = query.offset;
    while (out.size() < query.limit) {
      const auto e = cursor.next();
      if (!e) break;
      ++stats.index_entries_scanned;
      // Without a filter every entry is a match: skip the offset unread.
      if (no_filter && to_skip > 0) {
        --to_skip;
        continue;
      }
      auto got = load(*e);
      if (!got.ok()) return std::move(got).error();
      if (!*got || !matches(query.filter, **got)) continue;
      if (to_skip > 0) {
        --to_skip;
        continue;
      }
      out.push_back(std::move(**got));
    }
    if (!cursor.status().ok()) return status_error("query scan " + chosen.plan, cursor.status());
    return out;
  }

  // Other sorts: rank every match.
  while (const auto e = cursor.next()) {
    ++stats.index_entries_scanned;
    auto got = load(*e);
    if (!got.ok()) return std::move(got).error();
    if (!*got || !matches(query.filter, **got)) continue;
    consider(**got);
  }
  if (!cursor.status().ok()) return status_error("query scan " + chosen.plan, cursor.status());
  return finish_ranked();
}

}  // namespace arbiter::scoring
