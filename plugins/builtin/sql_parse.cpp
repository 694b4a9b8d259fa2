#include "plugins/builtin/sql_parse.hpp"

#include <pg_query.h>

#include <nlohmann/json.hpp>

#include "plugins/builtin/kernel.hpp"

namespace arbiter::plugins::builtin {

using nlohmann::json;

namespace {

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

// Frees a parse result on every path.
struct ParseResult {
  PgQueryParseResult r;
  explicit ParseResult(const std::string& sql) : r(pg_query_parse(sql.c_str())) {}
  ~ParseResult() { pg_query_free_parse_result(r); }
  ParseResult(const ParseResult&) = delete;
  ParseResult& operator=(const ParseResult&) = delete;
};

class SqlParseKernel : public Kernel {
 public:
  explicit SqlParseKernel(Params& params)
      : Kernel(params.score_name()), output_(params.path("output", "outputs.content")) {
    if (auto dialect = params.optional_string("dialect"); dialect && *dialect != "postgresql") {
      throw ConfigError("dialect: only \"postgresql\" is supported, got \"" + *dialect + "\"");
    }
  }

  json evaluate(const json& event) const override {
    const auto output = event_text(event, output_);
    if (!output) return error_result(missing_field(output_));
    SqlVerdict verdict = check_postgresql(strip_code_fence(*output));
    return score(verdict.valid, std::move(verdict.error));
  }

 private:
  const std::string output_;
};

}  // namespace

std::string_view strip_code_fence(std::string_view text) {
  text = trim(text);
  for (std::string_view fence : {std::string_view("```"), std::string_view("~~~")}) {
    if (text.substr(0, fence.size()) != fence) continue;
    const std::size_t eol = text.find('\n');
    if (eol == std::string_view::npos) return text;  // "```select 1```" on one line: not a fence
    std::string_view body = trim(text.substr(eol + 1));
    if (body.size() >= fence.size() && body.substr(body.size() - fence.size()) == fence) {
      body = trim(body.substr(0, body.size() - fence.size()));
    }
    return body;
  }
  return text;
}

SqlVerdict check_postgresql(std::string_view sql) {
  SqlVerdict out;
  if (sql.find('\0') != std::string_view::npos) {
    out.error = "output contains a NUL byte";
    return out;
  }
  const std::string text(sql);
  const ParseResult parsed(text);
  if (parsed.r.error != nullptr) {
    const PgQueryError& e = *parsed.r.error;
    out.error = e.message != nullptr ? e.message : "syntax error";
    if (e.cursorpos > 0) out.error += " (at character " + std::to_string(e.cursorpos) + ")";
    return out;
  }
  // An empty statement list ("", "-- note", ";") parses but is not a query.
  const json tree =
      json::parse(parsed.r.parse_tree != nullptr ? parsed.r.parse_tree : "", nullptr, false);
  const auto stmts = tree.is_object() ? tree.find("stmts") : tree.end();
  if (!tree.is_object() || stmts == tree.end() || !stmts->is_array() || stmts->empty()) {
    out.error = "output contains no SQL statement";
    return out;
  }
  out.valid = true;
  return out;
}

std::unique_ptr<Kernel> make_sql_parse(Params& params) {
  return std::make_unique<SqlParseKernel>(params);
}

}  // namespace arbiter::plugins::builtin
