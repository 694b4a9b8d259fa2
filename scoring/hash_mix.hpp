#pragma once
// Small non-cryptographic hashing steps shared by the places that spread ids
// over buckets, shards or sample percentages. Their output is relied on to
// stay the same across versions (sampling decisions, outbox buckets): do not
// change the constants.
//
// Thread-safety: pure functions.

#include <cstdint>
#include <string_view>

namespace arbiter::scoring {

inline constexpr std::uint64_t kFnv1aBasis = 14695981039346656037ULL;

// Folds `bytes` into an FNV-1a state.
constexpr std::uint64_t fnv1a(std::uint64_t h, std::string_view bytes) {
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// splitmix64's finaliser: every input bit reaches every output bit, so the
// low bits (what % takes) and the high bits (a shard) are both well mixed.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace arbiter::scoring
