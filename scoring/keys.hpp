#pragma once
// Byte layouts of the request log's RocksDB keys (DESIGN.md §8). Keys are
// byte-ordered so that "one project's X, by time" is a prefix scan:
//
//   records       part(project) id                         → metadata (encode_metadata)
//   bodies        part(project) id \0 kind                 → raw body bytes
//   idx_time      part(project) ts id                      → ""
//   idx_user      part(project) part(user_id) ts id        → ""
//   idx_session   part(project) part(session_id) ts id     → ""
//   idx_property  part(project) part(key) part(value) ts id → ""
//   idx_model     part(project) part(model) ts id          → ""
//
// part(s) is s with 0x00 → 0x01 0x01 and 0x01 → 0x01 0x02, then a 0x00
// terminator, so a part never contains 0x00 and "a" is never a prefix match
// for "ab". (This escaping does not keep the byte order of parts that contain
// 0x01, which no scan relies on: string parts are matched by equality only.)
// ts is created_at_us as 8 big-endian bytes with the sign bit flipped, so
// negative times still sort first. id is the last component and, being
// valid_request_id(), has no 0x00.
//
// Ids arbiter makes lead with their creation time (gateway::new_request_id),
// so `records` and `bodies` are, per project, appended in time order too;
// their memtable insert hint is part(project) (store.cpp).
//
// The `scores` and `idx_score` column families (scores, configs, feedback;
// by name+time, name+value, and time) are laid out in scoring/score_store.hpp.
// There, sortable(value) is 8 bytes: for an IEEE double, bits with the sign
// bit flipped when positive and all bits flipped when negative (so byte order
// is numeric order); booleans are 0.0/1.0. A `scores.<k>` gt/lt filter is a
// range scan within 'V' part(project) part(k).
//
// Thread-safety: pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace arbiter::scoring::keys {

enum class BodyKind : char { kRequest = 'q', kResponse = 's', kStreamRaw = 'r' };

void append_part(std::string& out, std::string_view part);
// Reads one part from the front of `in` into `out`, advancing `in` past its
// terminator; false when `in` holds no complete part.
bool read_part(std::string_view& in, std::string& out);
void append_ts(std::string& out, std::int64_t ts_us);
std::int64_t decode_ts(std::string_view eight_bytes);

inline std::string part(std::string_view s) {
  std::string out;
  append_part(out, s);
  return out;
}

std::string record(std::string_view project, std::string_view id);
std::string body(std::string_view project, std::string_view id, BodyKind kind);

// Index prefixes; an entry is prefix + ts + id.
inline std::string time_prefix(std::string_view project) {
  return part(project);
}
std::string user_prefix(std::string_view project, std::string_view user_id);
std::string session_prefix(std::string_view project, std::string_view session_id);
std::string model_prefix(std::string_view project, std::string_view model);
std::string property_prefix(std::string_view project, std::string_view key, std::string_view value);
std::string entry(std::string_view prefix, std::int64_t ts_us, std::string_view id);

// The smallest key greater than every key that starts with `prefix` (all our
// prefixes end in the 0x00 terminator, so this bumps it to 0x01). Empty when
// there is none (a prefix of only 0xFF bytes, which we never build).
std::string prefix_end(std::string_view prefix);

struct IndexEntry {
  std::int64_t ts_us;
  std::string_view id;  // points into the key passed to parse_entry
};
// Splits an index key whose first prefix_len bytes are the prefix.
std::optional<IndexEntry> parse_entry(std::string_view key, std::size_t prefix_len);

}  // namespace arbiter::scoring::keys
