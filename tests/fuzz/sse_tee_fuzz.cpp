// An upstream's event stream → the SSE tap (gateway/sse_tap.*) the proxy
// feeds while relaying, with the bytes split into pieces at fuzzer-chosen
// boundaries (as TCP reads and chunked decoding split them) → the
// reassembled completion the log stores.
//
// Oracle besides the sanitizers: the result must not depend on where the
// stream was split, what is stored (reassembled().dump(), or reassemble_stream
// of the raw copy) must not depend on which of the two built it, and it must be
// shallow enough to serialise without deep recursion.
//
// Input: byte 0 = number of split points (mod 32), then 2 bytes per split
// point (its offset, mod the stream length), then the stream.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gateway/sse_tap.hpp"
#include "scoring/json_limits.hpp"
#include "tests/fuzz/fuzz_json_depth.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {
using arbiter::fuzz::check;
using arbiter::gateway::SseTap;

// Depth of what the proxy may store: an object with choices (3) holding
// messages (4) with tool calls (5, 6) and functions (7), plus a usage object
// the provider sent (kept only if shallow).
constexpr std::size_t kMaxStoredDepth = arbiter::scoring::kMaxJsonDepth + 8;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t splits = data[0] % 32;
  std::size_t pos = 1;
  std::vector<std::size_t> raw_points;
  while (splits-- > 0 && pos + 2 <= size) {
    raw_points.push_back(static_cast<std::size_t>(data[pos]) << 8 | data[pos + 1]);
    pos += 2;
  }
  const std::string_view stream(reinterpret_cast<const char*>(data) + pos, size - pos);
  std::vector<std::size_t> points;
  for (auto p : raw_points) points.push_back(stream.empty() ? 0 : p % (stream.size() + 1));
  std::sort(points.begin(), points.end());

  SseTap split;
  std::size_t at = 0;
  for (auto p : points) {
    split.feed(stream.substr(at, p - at));  // empty pieces too: a zero-length read
    at = p;
  }
  split.feed(stream.substr(at));
  split.finish();

  SseTap whole;
  whole.feed(stream);
  whole.finish();

  const auto a = split.reassembled();
  const auto b = whole.reassembled();
  check(arbiter::fuzz::json_depth(a) <= kMaxStoredDepth, "reassembled completion nested too deep to store safely");
  check(a == b, "reassembly depends on how the stream was split");
  check(split.events() == whole.events() && split.saw_done() == whole.saw_done() &&
            split.has_first_token() == whole.has_first_token() && split.overflowed() == whole.overflowed(),
        "event counters depend on how the stream was split");
  // What is stored: the storage thread rebuilds the completion from the raw
  // copy (reassemble_stream); the proxy's tap, when the copy was cut, reads the
  // stream in its own pieces. Both must give the same bytes.
  check(a.dump() == arbiter::gateway::reassemble_stream(stream),
        "the completion rebuilt from the raw copy differs from the tap's");
  return 0;
}
