#include "clients/cpp/yaml_value.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace prewarm::ctl {
namespace {

using google::protobuf::Value;

constexpr char kStrTag[] = "tag:yaml.org,2002:str";

absl::Status Error(const YAML::Mark& mark, absl::string_view what) {
  if (mark.is_null()) return absl::InvalidArgumentError(what);
  return absl::InvalidArgumentError(absl::StrCat("line ", mark.line + 1, ": ", what));
}

// How errors name a node: 'services[0].keep_alive', or the document itself.
std::string Where(const std::string& path) {
  return path.empty() ? std::string("the document") : absl::StrCat("'", path, "'");
}

bool AllOf(absl::string_view s, bool (*pred)(unsigned char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsOctalDigit(unsigned char c) { return c >= '0' && c <= '7'; }

// An unsigned integer in `base` (8 or 16); as a double, like every JSON number.
double Accumulate(absl::string_view digits, int base) {
  double d = 0;
  for (char c : digits) {
    d = d * base + (absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10);
  }
  return d;
}

// YAML 1.2 core schema: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, which covers its
// integers [-+]?[0-9]+ too.
bool IsDecimal(absl::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t digits = 0;
  while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (i == s.size()) return false;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
  }
  return i == s.size();
}

// The number a plain scalar stands for under the core schema, or false when it is no number.
bool CoreNumber(absl::string_view s, double* out) {
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x' && AllOf(s.substr(2), absl::ascii_isxdigit)) {
    *out = Accumulate(s.substr(2), 16);
    return true;
  }
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o' && AllOf(s.substr(2), IsOctalDigit)) {
    *out = Accumulate(s.substr(2), 8);
    return true;
  }
  absl::string_view unsigned_part = s;
  const bool negative = !s.empty() && s[0] == '-';
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) unsigned_part.remove_prefix(1);
  if (unsigned_part == ".inf" || unsigned_part == ".Inf" || unsigned_part == ".INF") {
    *out = negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
    return true;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return IsDecimal(s) && absl::SimpleAtod(s, out);
}

class Converter {
 public:
  explicit Converter(const YamlLimits& limits) : limits_(limits) {}

  // `path` names the node in errors: "services[0].keep_alive"; empty for the document.
  absl::StatusOr<Value> Convert(const YAML::Node& node, const std::string& path, int depth) {
    if (++nodes_ > limits_.max_nodes) {
      return Error(node.Mark(),
                   absl::StrCat("the document expands to more than ", limits_.max_nodes,
                                " nodes (aliases repeat what their anchor names)"));
    }
    Value v;
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        v.set_null_value(google::protobuf::NULL_VALUE);
        return v;
      case YAML::NodeType::Scalar:
        return Scalar(node, path);
      case YAML::NodeType::Sequence:
      case YAML::NodeType::Map:
        break;
    }
    if (depth >= limits_.max_depth) {
      return Error(node.Mark(),
                   absl::StrCat("nesting deeper than ", limits_.max_depth, " at ", Where(path)));
    }
    if (node.IsSequence()) {
      auto& values = *v.mutable_list_value()->mutable_values();
      for (const YAML::Node& item : node) {
        absl::StatusOr<Value> converted =
            Convert(item, absl::StrCat(path, "[", values.size(), "]"), depth + 1);
        if (!converted.ok()) return converted.status();
        *values.Add() = *std::move(converted);
      }
      return v;
    }
    auto& fields = *v.mutable_struct_value()->mutable_fields();
    for (const auto& entry : node) {
      const YAML::Node& key_node = entry.first;
      const std::string where = Where(path);
      if (key_node.IsNull()) {
        return Error(key_node.Mark(),
                     absl::StrCat("empty or null key in ", where, " (quote it: \"null\")"));
      }
      if (!key_node.IsScalar()) {
        return Error(key_node.Mark(),
                     absl::StrCat("a key in ", where, " is a collection; keys are scalars"));
      }
      const std::string& key = key_node.Scalar();
      if (absl::Status s = ChargeText(key_node, key); !s.ok()) return s;
      const std::string key_path = path.empty() ? key : absl::StrCat(path, ".", key);
      if (fields.count(key) > 0) {
        return Error(key_node.Mark(), absl::StrCat("duplicate key '", key_path, "'"));
      }
      absl::StatusOr<Value> converted = Convert(entry.second, key_path, depth + 1);
      if (!converted.ok()) return converted.status();
      fields[key] = *std::move(converted);
    }
    return v;
  }

 private:
  // Counts the text of a scalar (or key) against the limit.
  absl::Status ChargeText(const YAML::Node& node, const std::string& text) {
    scalar_bytes_ += text.size();
    if (scalar_bytes_ <= limits_.max_scalar_bytes) return absl::OkStatus();
    return Error(node.Mark(),
                 absl::StrCat("the document expands to more than ", limits_.max_scalar_bytes,
                              " bytes of text (aliases repeat what their anchor names)"));
  }

  absl::StatusOr<Value> Scalar(const YAML::Node& node, const std::string& path) {
    const std::string& text = node.Scalar();
    if (absl::Status s = ChargeText(node, text); !s.ok()) return s;
    Value v;
    // yaml-cpp tags quoted and block scalars "!" (non-specific: a string) and plain ones "?"
    // (resolved by the schema).
    const std::string& tag = node.Tag();
    if (tag == "!" || tag == kStrTag) {
      v.set_string_value(text);
      return v;
    }
    if (tag != "?") {
      return Error(node.Mark(), absl::StrCat("tag '", tag, "' at ", Where(path),
                                             " is not supported (only !!str)"));
    }
    if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
      v.set_null_value(google::protobuf::NULL_VALUE);
    } else if (text == "true" || text == "True" || text == "TRUE") {
      v.set_bool_value(true);
    } else if (text == "false" || text == "False" || text == "FALSE") {
      v.set_bool_value(false);
    } else if (double d = 0; CoreNumber(text, &d)) {
      if (!std::isfinite(d)) {
        return Error(node.Mark(),
                     absl::StrCat(Where(path), " is ", text,
                                  ", which JSON cannot carry (numbers are finite); quote it "
                                  "for a string"));
      }
      v.set_number_value(d);
    } else {
      v.set_string_value(text);
    }
    return v;
  }

  const YamlLimits& limits_;
  size_t nodes_ = 0;
  size_t scalar_bytes_ = 0;
};

// Whether line `line` (0-based) of `text` is indented with a tab: YAML forbids it, and yaml-cpp
// reports it as whatever token it then meets ("illegal map value").
bool TabIndented(absl::string_view text, int line) {
  int n = 0;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (n++ != line) continue;
    for (char c : l) {
      if (c == '\t') return true;
      if (c != ' ') return false;
    }
    return false;
  }
  return false;
}

// yaml-cpp 0.7 reads some short malformed inputs without end: for `"a", "b: "c` it emits nodes
// until memory runs out (found by tests/fuzz/dag_file_fuzz.cc). A document has at most a few
// parse events per byte (an alias is one event), so a first pass counts them and stops a runaway
// before LoadAll builds anything.
class EventBudget final : public YAML::EventHandler {
 public:
  struct Exceeded {
    YAML::Mark mark;
  };

  explicit EventBudget(size_t budget) : budget_(budget) {}

  void OnDocumentStart(const YAML::Mark& mark) override { Spend(mark); }
  void OnDocumentEnd() override { Spend(last_); }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Spend(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Spend(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Spend(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Spend(mark);
  }
  void OnSequenceEnd() override { Spend(last_); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Spend(mark);
  }
  void OnMapEnd() override { Spend(last_); }

 private:
  void Spend(const YAML::Mark& mark) {
    last_ = mark;
    if (++events_ > budget_) throw Exceeded{mark};
  }

  const size_t budget_;
  size_t events_ = 0;
  YAML::Mark last_ = YAML::Mark::null_mark();
};

absl::Status ParseError(absl::string_view text, const YAML::Exception& e) {
  if (e.mark.is_null()) return absl::InvalidArgumentError(e.msg);
  if (TabIndented(text, e.mark.line))
    return Error(e.mark, "tab in indentation (indent with spaces)");
  return absl::InvalidArgumentError(
      absl::StrCat("line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg));
}

}  // namespace

absl::StatusOr<google::protobuf::Value> ParseYaml(absl::string_view text,
                                                  const YamlLimits& limits) {
  const std::string owned(text);
  std::vector<YAML::Node> documents;
  try {
    std::istringstream in(owned);
    YAML::Parser parser(in);
    EventBudget budget(4 * owned.size() + 64);
    while (parser.HandleNextDocument(budget)) {
    }
    documents = YAML::LoadAll(owned);
  } catch (const EventBudget::Exceeded& e) {
    return Error(e.mark, "yaml-cpp cannot read this text (it does not end); check the quotes");
  } catch (const YAML::Exception& e) {
    return ParseError(text, e);
  }
  if (documents.empty()) {
    Value null;
    null.set_null_value(google::protobuf::NULL_VALUE);
    return null;
  }
  if (documents.size() > 1) {
    return Error(documents[1].Mark(),
                 "a second document starts here; a file holds one (check the indentation)");
  }
  return Converter(limits).Convert(documents[0], "", 0);
}

}  // namespace prewarm::ctl
