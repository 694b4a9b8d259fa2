#include "scoring/keys.hpp"

namespace arbiter::scoring::keys {

void append_part(std::string& out, std::string_view s) {
  // Runs of ordinary bytes are appended whole: ids and names rarely hold
  // 0x00 or 0x01, and a push_back per byte cost ~12k instructions per score
  // write (bench/README, session 19).
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c != '\0' && c != '\x01') continue;
    out.append(s.data() + run, i - run);
    out.append(c == '\0' ? "\x01\x01" : "\x01\x02", 2);
    run = i + 1;
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('\0');
}

bool read_part(std::string_view& in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '\0') {
      in.remove_prefix(i + 1);
      return true;
    }
    if (c == '\x01') {
      if (i + 1 >= in.size()) return false;
      out.push_back(in[i + 1] == '\x01' ? '\0' : '\x01');
      ++i;
    } else {
      out.push_back(c);
    }
  }
  return false;
}

void append_ts(std::string& out, std::int64_t ts_us) {
  const std::uint64_t u = static_cast<std::uint64_t>(ts_us) ^ (1ull << 63);
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((u >> shift) & 0xFF));
  }
}

std::int64_t decode_ts(std::string_view b) {
  std::uint64_t u = 0;
  for (std::size_t i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(b[i]);
  return static_cast<std::int64_t>(u ^ (1ull << 63));
}

std::string record(std::string_view project, std::string_view id) {
  std::string k = part(project);
  k.append(id);
  return k;
}

std::string body(std::string_view project, std::string_view id, BodyKind kind) {
  std::string k = record(project, id);
  k.push_back('\0');
  k.push_back(static_cast<char>(kind));
  return k;
}

std::string user_prefix(std::string_view project, std::string_view user_id) {
  std::string k = part(project);
  append_part(k, user_id);
  return k;
}

std::string session_prefix(std::string_view project, std::string_view session_id) {
  std::string k = part(project);
  append_part(k, session_id);
  return k;
}

std::string model_prefix(std::string_view project, std::string_view model) {
  std::string k = part(project);
  append_part(k, model);
  return k;
}

std::string property_prefix(std::string_view project, std::string_view key,
                            std::string_view value) {
  std::string k = part(project);
  append_part(k, key);
  append_part(k, value);
  return k;
}

std::string entry(std::string_view prefix, std::int64_t ts_us, std::string_view id) {
  std::string k(prefix);
  append_ts(k, ts_us);
  k.append(id);
  return k;
}

std::string prefix_end(std::string_view prefix) {
  // Increment the last byte that can be incremented and drop what follows.
  // For our prefixes (ending in the 0x00 terminator) this just makes it 0x01.
  std::string k(prefix);
  while (!k.empty() && static_cast<unsigned char>(k.back()) == 0xFF) k.pop_back();
  if (!k.empty()) k.back() = static_cast<char>(static_cast<unsigned char>(k.back()) + 1);
  return k;  // empty = no upper bound
}

std::optional<IndexEntry> parse_entry(std::string_view key, std::size_t prefix_len) {
  if (key.size() < prefix_len + 8 + 1) return std::nullopt;
  return IndexEntry{decode_ts(key.substr(prefix_len, 8)), key.substr(prefix_len + 8)};
}

}  // namespace arbiter::scoring::keys
