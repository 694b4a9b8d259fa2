// Any bytes → parse_json_bounded (scoring/json_limits.*), arbiter's own JSON
// reader, which builds the documents evaluators, the API and the SSE tap see.
//
// Oracle besides the sanitizers: it must refuse exactly what nlohmann's
// parser refuses (with the same depth bound) and otherwise build the same
// document, with the same types: nlohmann's == calls 1, 1u and 1.0 equal, so
// the comparison walks both trees itself (iteratively) and compares doubles
// bit for bit.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "scoring/json_limits.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

using arbiter::fuzz::check;
using nlohmann::json;

bool same_document(const json& a, const json& b) {
  std::vector<std::pair<const json*, const json*>> stack{{&a, &b}};
  while (!stack.empty()) {
    auto [x, y] = stack.back();
    stack.pop_back();
    if (x->type() != y->type()) return false;
    switch (x->type()) {
      case json::value_t::object: {
        if (x->size() != y->size()) return false;
        for (auto i = x->begin(), j = y->begin(); i != x->end(); ++i, ++j) {
          if (i.key() != j.key()) return false;
          stack.emplace_back(&*i, &*j);
        }
        break;
      }
      case json::value_t::array:
        if (x->size() != y->size()) return false;
        for (std::size_t k = 0; k < x->size(); ++k) stack.emplace_back(&(*x)[k], &(*y)[k]);
        break;
      case json::value_t::number_float: {
        const double p = x->get<double>(), q = y->get<double>();
        if (std::memcmp(&p, &q, sizeof p) != 0) return false;
        break;
      }
      default:
        if (*x != *y) return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const json ours = arbiter::scoring::parse_json_bounded(text);
  const json theirs =
      arbiter::scoring::json_too_deep(text)
          ? json(json::value_t::discarded)
          : json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  check(ours.is_discarded() == theirs.is_discarded(),
        "the reader and nlohmann disagree on refusing the text");
  if (!ours.is_discarded())
    check(same_document(ours, theirs), "the reader built another document than nlohmann");
  return 0;
}
