#pragma once
// The sql_parse kind's checks, on PostgreSQL's own grammar (libpg_query, the
// parser of PostgreSQL 15 extracted as a library).
//
// Thread-safety: libpg_query keeps its parser state and memory contexts in
// thread-local storage and frees each thread's top memory context when the
// thread exits (a pthread key destructor), so check_postgresql may run on
// several threads at once; every parse result is freed before returning. A
// long-lived worker thread keeps one small memory context between calls.

#include <string>
#include <string_view>

namespace arbiter::plugins::builtin {

// LLMs wrap SQL in a markdown code fence; the statement inside is what is
// checked. When `text` (ignoring surrounding whitespace) starts with ``` or
// ~~~, the whole opening line (fence and info string such as "sql") is
// dropped, and a matching closing fence at the end, if any, too. Text around a
// fence in the middle of prose is not searched for: that output is not SQL.
// Returns a view into `text`, trimmed of surrounding whitespace.
std::string_view strip_code_fence(std::string_view text);

struct SqlVerdict {
  bool valid = false;
  std::string error;  // when !valid: PostgreSQL's message and the position
};

// Whether `sql` (already unfenced) parses as one or more PostgreSQL
// statements. Empty text, text with only comments or semicolons, or text
// containing a NUL byte is not valid. Syntax only: names are not resolved
// against any schema.
SqlVerdict check_postgresql(std::string_view sql);

}  // namespace arbiter::plugins::builtin
