#pragma once
// The primitives of the compact storage values (format version 2 of a
// record's metadata and of a score; issue #7): varints, zigzag varints,
// doubles as 8 little-endian bytes, length-prefixed strings, and
// length-prefixed CBOR for the free-form JSON members; and the fixed-width
// little-endian integers and u32-length-prefixed strings of the webhook
// outbox's entries. The layouts themselves live next to their structs
// (request_record.cpp, score.cpp, eval_runs.cpp, webhook_outbox.cpp); this
// file only makes every read bounds-checked in one place.
//
// Reader failures are sticky: the first one (truncation, an overlong
// varint, bad CBOR...) is remembered, every later read returns a zero value
// without touching memory, and the decoder checks ok() once at the end. So a
// truncated or corrupt value can cost a few wasted reads, never a read past
// the end.
//
// Thread-safety: Writer and Reader are single-use values over caller-owned
// bytes; use one per thread. Lifetime: a Writer appends to the string it was
// given, a Reader views bytes that must outlive it.

#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json_fwd.hpp>

namespace arbiter::scoring::binary {

// Deepest nesting accepted in an embedded CBOR value: what the API lets in
// (kMaxJsonDepth) plus the levels the stored shapes add around it. Checked
// before nlohmann's recursive CBOR parser sees the bytes, so that a corrupt
// value cannot exhaust the stack.
inline constexpr std::size_t kMaxCborDepth = 160;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }

  void varint(std::uint64_t v) {
    char buf[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      buf[n++] = static_cast<char>((v & 0x7F) | 0x80);
      v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    out_.append(buf, n);
  }

  // Zigzag, so that small negative numbers stay short too.
  void svarint(std::int64_t v) {
    const auto u = static_cast<std::uint64_t>(v);
    varint((u << 1) ^ (v < 0 ? ~std::uint64_t{0} : std::uint64_t{0}));
  }

  // Bit-exact: -0.0, denormals and every NaN payload survive.
  void f64(double v) {
    const auto bits = std::bit_cast<std::uint64_t>(v);
    char buf[8];
    for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(bits >> (8 * i));
    out_.append(buf, 8);
  }

  void str(std::string_view s) {
    varint(s.size());
    out_.append(s.data(), s.size());
  }

  // An integer in sizeof(T) little-endian bytes.
  template <class T>
  void fixed(T v) {
    static_assert(std::is_integral_v<T>);
    auto u = static_cast<std::make_unsigned_t<T>>(v);
    char buf[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      buf[i] = static_cast<char>(u & 0xFF);
      u = static_cast<std::make_unsigned_t<T>>(u >> 7 >> 1);  // no shift-width warning for u8
    }
    out_.append(buf, sizeof(T));
  }

  // A string after its length as a fixed u32.
  void str32(std::string_view s) {
    fixed(static_cast<std::uint32_t>(s.size()));
    out_.append(s.data(), s.size());
  }

  // Length-prefixed CBOR of `j` (nlohmann::json::to_cbor).
  void cbor(const nlohmann::json& j);

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view bytes)
      : p_(reinterpret_cast<const unsigned char*>(bytes.data())), end_(p_ + bytes.size()) {}

  bool ok() const { return error_ == nullptr; }
  // The first failure ("truncated string", ...), or "" while ok().
  const char* error() const { return error_ != nullptr ? error_ : ""; }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  bool at_end() const { return p_ == end_; }

  // Records a failure (the first one wins) and stops every later read.
  void fail(const char* why) {
    if (error_ == nullptr) error_ = why;
    p_ = end_;
  }

  std::uint8_t u8() {
    if (p_ == end_) {
      fail("truncated byte");
      return 0;
    }
    return *p_++;
  }

  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) {
        fail("truncated varint");
        return 0;
      }
      const unsigned char b = *p_++;
      // The tenth byte holds bit 63 only.
      if (shift == 63 && b > 1) {
        fail("varint overflows 64 bits");
        return 0;
      }
      v |= std::uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint overflows 64 bits");
    return 0;
  }

  std::int64_t svarint() {
    const std::uint64_t u = varint();
    return static_cast<std::int64_t>((u >> 1) ^ (~(u & 1) + 1));
  }

  double f64() {
    if (remaining() < 8) {
      fail("truncated double");
      return 0;
    }
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits |= std::uint64_t{p_[i]} << (8 * i);
    p_ += 8;
    return std::bit_cast<double>(bits);
  }

  // A view into the reader's bytes; empty after a failure.
  std::string_view str_view() {
    const std::uint64_t n = varint();
    if (n > remaining()) {
      fail("truncated string");
      return {};
    }
    const std::string_view s(reinterpret_cast<const char*>(p_), static_cast<std::size_t>(n));
    p_ += n;
    return s;
  }

  void str(std::string& out) {
    const std::string_view s = str_view();
    out.assign(s.data(), s.size());
  }

  // An integer written by Writer::fixed; 0 after a failure.
  template <class T>
  void fixed(T& out) {
    static_assert(std::is_integral_v<T>);
    if (remaining() < sizeof(T)) {
      fail("truncated integer");
      out = 0;
      return;
    }
    std::make_unsigned_t<T> u = 0;
    for (std::size_t i = sizeof(T); i-- > 0;) {
      u = static_cast<std::make_unsigned_t<T>>(u << 7 << 1 | p_[i]);
    }
    p_ += sizeof(T);
    out = static_cast<T>(u);
  }

  // A string written by Writer::str32; empty after a failure.
  void str32(std::string& out) {
    std::uint32_t n = 0;
    fixed(n);
    if (n > remaining()) {
      fail("truncated string");
      n = 0;
    }
    out.assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
  }

  // A length-prefixed CBOR value (see kMaxCborDepth); leaves `out` alone on
  // failure.
  void cbor(nlohmann::json& out);

 private:
  const unsigned char* p_;
  const unsigned char* end_;
  const char* error_ = nullptr;
};

// Parses a whole CBOR value as nlohmann::json does, after checking that it
// is made only of what to_cbor writes for JSON (integers, floats, strings,
// true/false/null, definite-length arrays and maps) and nests at most
// max_depth levels. Never throws; a discarded value (is_discarded()) when the
// bytes are anything else. Used for the embedded members above and for
// whole version-1 values.
nlohmann::json parse_cbor_bounded(std::string_view bytes, std::size_t max_depth = kMaxCborDepth);

}  // namespace arbiter::scoring::binary
