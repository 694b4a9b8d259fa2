// The json_schema kind: the output parsed as JSON and validated against a
// JSON Schema with valijson (draft 7 by default; draft 4 or 3 when the
// schema's "$schema" names it). The schema is compiled once, at create.
//
// Limits, by design:
//  - "$ref" must point inside the schema: remote references are not fetched
//    (an evaluator must not reach the network or the file system per event),
//    and such a schema fails at create.
//  - An output nested deeper than kMaxDepth is scored false without
//    validating, so a hostile output cannot exhaust a worker's stack in the
//    validator's recursion.
//  - The output is parsed as is: a markdown fence around JSON makes it "not
//    JSON", like json_key_coverage.
// Thread-safety: the compiled schema is read-only during validation; each call
// builds its own valijson::Validator (whose regex cache is not thread-safe).

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "plugins/builtin/kernel.hpp"

namespace arbiter::plugins::builtin {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxDepth = 256;

// Depth of the deepest value (a scalar is 1), iteratively; stops early once
// `limit` is exceeded.
bool depth_exceeds(const json& doc, std::size_t limit) {
  std::vector<std::pair<const json*, std::size_t>> stack{{&doc, 1}};
  while (!stack.empty()) {
    auto [node, depth] = stack.back();
    stack.pop_back();
    if (depth > limit) return true;
    if (node->is_structured()) {
      for (const auto& child : *node) stack.emplace_back(&child, depth + 1);
    }
  }
  return false;
}

// "<root>", "[items]", "[0]" -> "/items/0" (a JSON pointer without escaping).
std::string pointer_of(const std::vector<std::string>& context) {
  std::string out;
  for (const auto& part : context) {
    if (part == "<root>") continue;
    if (part.size() >= 2 && part.front() == '[' && part.back() == ']') {
      out += "/" + part.substr(1, part.size() - 2);
    } else {
      out += "/" + part;
    }
  }
  return out.empty() ? "/" : out;
}

valijson::SchemaParser::Version draft_of(const json& schema) {
  if (schema.is_object()) {
    if (auto it = schema.find("$schema"); it != schema.end() && it->is_string()) {
      const auto& uri = it->get_ref<const std::string&>();
      if (uri.find("draft-04") != std::string::npos) return valijson::SchemaParser::kDraft4;
      if (uri.find("draft-03") != std::string::npos) return valijson::SchemaParser::kDraft3;
    }
  }
  return valijson::SchemaParser::kDraft7;
}

json read_schema_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("schema_file: cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("schema_file: cannot read " + path);
  json schema = json::parse(text.str(), nullptr, false);
  if (schema.is_discarded()) throw ConfigError("schema_file: " + path + " is not valid JSON");
  return schema;
}

class JsonSchemaKernel : public Kernel {
 public:
  explicit JsonSchemaKernel(Params& params)
      : Kernel(params.score_name()), output_(params.path("output", "outputs.content")) {
    const json* inline_schema = params.optional("schema");
    const auto file = params.optional_string("schema_file");
    if ((inline_schema != nullptr) == file.has_value()) {
      throw ConfigError(
          "schema: give exactly one of schema (an inline object) or schema_file (a path)");
    }
    std::string where = "schema";
    if (inline_schema != nullptr) {
      if (!inline_schema->is_object() && !inline_schema->is_boolean()) {
        throw ConfigError("schema: expected a JSON Schema object");
      }
      schema_doc_ = *inline_schema;
    } else {
      if (file->empty()) throw ConfigError("schema_file: expected a path");
      schema_doc_ = read_schema_file(*file);
      where = "schema_file " + *file;
      if (!schema_doc_.is_object() && !schema_doc_.is_boolean()) {
        throw ConfigError(where + ": expected a JSON Schema object");
      }
    }
    try {
      valijson::SchemaParser parser(draft_of(schema_doc_));
      valijson::adapters::NlohmannJsonAdapter adapter(schema_doc_);
      parser.populateSchema(adapter, schema_);
    } catch (const std::exception& e) {
      throw ConfigError(where + ": invalid JSON Schema: " + e.what());
    }
  }

  json evaluate(const json& event) const override {
    const auto output = event_text(event, output_);
    if (!output) return error_result(missing_field(output_));
    json doc;
    try {
      doc = json::parse(*output);
    } catch (const json::exception& e) {
      // parse_error, or out_of_range for a number beyond double ("1e400"):
      // the class the fuzzers found in the API's json_body.
      return score(false, "output is not JSON: " + strip_exception_prefix(e.what()));
    }
    if (depth_exceeds(doc, kMaxDepth)) {
      return score(false, "output nests deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    valijson::Validator validator;
    valijson::ValidationResults results;
    valijson::adapters::NlohmannJsonAdapter target(doc);
    if (validator.validate(schema_, target, &results)) return score(true);
    valijson::ValidationResults::Error first;
    std::string comment = "output does not match the schema";
    if (results.popError(first)) comment = pointer_of(first.context) + ": " + first.description;
    return score(false, std::move(comment));
  }

 private:
  // "[json.exception.parse_error.101] parse error at ..." -> "parse error at ...".
  static std::string strip_exception_prefix(std::string message) {
    if (!message.empty() && message.front() == '[') {
      if (auto close = message.find("] "); close != std::string::npos) message.erase(0, close + 2);
    }
    return message;
  }

  const std::string output_;
  json schema_doc_;
  valijson::Schema schema_;
};

}  // namespace

std::unique_ptr<Kernel> make_json_schema(Params& params) {
  return std::make_unique<JsonSchemaKernel>(params);
}

}  // namespace arbiter::plugins::builtin
