#include "scoring/binary_codec.hpp"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

namespace arbiter::scoring::binary {

namespace {

// Walks one CBOR data item without recursion and says whether it is made of
// what nlohmann::json::to_cbor writes for JSON values, ends exactly at the
// end of `bytes` and nests at most `max_depth` containers. Anything else
// (tags, indefinite lengths, undefined/simple values, reserved additional
// information, truncation) is refused: none of it is ever written by us.
bool cbor_shape_ok(std::string_view bytes, std::size_t max_depth) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* const end = p + bytes.size();
  // Items still to read in each open container; [0] is the top level.
  std::array<std::uint64_t, kMaxCborDepth + 1> pending{};
  max_depth = std::min(max_depth, kMaxCborDepth);
  std::size_t depth = 0;
  pending[0] = 1;
  while (true) {
    while (pending[depth] == 0) {
      if (depth == 0) return p == end;
      --depth;
    }
    --pending[depth];
    if (p == end) return false;
    const unsigned char initial = *p++;
    const unsigned major = initial >> 5;
    const unsigned info = initial & 0x1F;
    std::uint64_t arg = info;
    if (info >= 24) {
      if (info > 27) return false;  // reserved, or an indefinite length
      const std::size_t n = std::size_t{1} << (info - 24);
      if (static_cast<std::size_t>(end - p) < n) return false;
      arg = 0;
      for (std::size_t i = 0; i < n; ++i) arg = (arg << 8) | p[i];
      p += n;
    }
    const auto left = static_cast<std::uint64_t>(end - p);
    switch (major) {
      case 0:  // unsigned integer
      case 1:  // negative integer
        break;
      case 2:  // byte string
      case 3:  // text string
        if (arg > left) return false;
        p += arg;
        break;
      case 4:  // array: every item takes at least one byte
      case 5:  // map: two items per entry
        if (arg == 0) break;
        if (major == 5 && arg > left / 2) return false;
        if (arg > left) return false;
        if (depth + 1 > max_depth) return false;
        pending[++depth] = major == 5 ? arg * 2 : arg;
        break;
      case 7:
        // false, true, null; half, single and double floats (their bytes
        // were consumed as the argument above).
        if (!(info == 20 || info == 21 || info == 22 || info == 25 || info == 26 || info == 27)) {
          return false;
        }
        break;
      default:  // 6: tags
        return false;
    }
  }
}

}  // namespace

void Writer::cbor(const nlohmann::json& j) {
  // The length goes in front of the CBOR; writing the CBOR first and then
  // inserting the (short) prefix avoids a second buffer.
  const std::size_t start = out_.size();
  nlohmann::json::to_cbor(j, out_);
  std::uint64_t n = out_.size() - start;
  char buf[10];
  std::size_t len = 0;
  while (n >= 0x80) {
    buf[len++] = static_cast<char>((n & 0x7F) | 0x80);
    n >>= 7;
  }
  buf[len++] = static_cast<char>(n);
  out_.insert(start, buf, len);
}

void Reader::cbor(nlohmann::json& out) {
  const std::string_view bytes = str_view();
  if (!ok()) return;
  auto parsed = parse_cbor_bounded(bytes);
  if (parsed.is_discarded()) {
    fail("bad CBOR");
    return;
  }
  out = std::move(parsed);
}

nlohmann::json parse_cbor_bounded(std::string_view bytes, std::size_t max_depth) {
  if (!cbor_shape_ok(bytes, max_depth)) return nlohmann::json::value_t::discarded;
  try {
    return nlohmann::json::from_cbor(bytes.begin(), bytes.end(), /*strict=*/true,
                                     /*allow_exceptions=*/false);
  } catch (const std::exception&) {
    // allow_exceptions=false covers parse errors; this is for allocation
    // failure on a huge (corrupt) length, which the shape check makes
    // unlikely but not impossible.
    return nlohmann::json::value_t::discarded;
  }
}

}  // namespace arbiter::scoring::binary
