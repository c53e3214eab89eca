#include "clients/cpp/yaml_subset.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace prewarm::ctl {
namespace {

using google::protobuf::Value;

// Nesting deeper than this is surely not a configuration file; it also bounds the recursion.
constexpr int kMaxDepth = 64;

struct Line {
  int number;  // 1-based, for messages.
  int indent;  // Columns of leading spaces.
  std::string text;  // Without indentation, comment and trailing spaces.
};

absl::Status Error(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

Value Null() {
  Value v;
  v.set_null_value(google::protobuf::NULL_VALUE);
  return v;
}

bool IsNumber(absl::string_view s) {
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
    size_t exponent = 0;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++exponent;
    if (exponent == 0) return false;
  }
  return i == s.size();
}

// A plain scalar typed by YAML 1.2's core schema (the parts configuration files use).
Value PlainScalar(absl::string_view s) {
  Value v;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Null();
  if (s == "true" || s == "True" || s == "TRUE") {
    v.set_bool_value(true);
  } else if (s == "false" || s == "False" || s == "FALSE") {
    v.set_bool_value(false);
  } else if (double d = 0; IsNumber(s) && absl::SimpleAtod(s, &d)) {
    v.set_number_value(d);
  } else {
    v.set_string_value(std::string(s));
  }
  return v;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Reads a quoted scalar starting at s[*pos] (a quote); leaves *pos after the closing quote.
absl::StatusOr<std::string> Quoted(absl::string_view s, size_t* pos, int line) {
  const char quote = s[*pos];
  std::string out;
  size_t i = *pos + 1;
  while (i < s.size()) {
    const char c = s[i];
    if (quote == '\'') {
      if (c == '\'') {
        if (i + 1 < s.size() && s[i + 1] == '\'') {
          out.push_back('\'');
          i += 2;
          continue;
        }
        *pos = i + 1;
        return out;
      }
      out.push_back(c);
      ++i;
      continue;
    }
    if (c == '"') {
      *pos = i + 1;
      return out;
    }
    if (c != '\\') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (i + 1 >= s.size()) break;
    const char e = s[i + 1];
    i += 2;
    switch (e) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case '0': out.push_back('\0'); break;
      case '"': case '\\': case '/': case ' ': out.push_back(e); break;
      case 'x': case 'u': case 'U': {
        const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        if (i + n > s.size()) return Error(line, "truncated escape in a double-quoted scalar");
        for (size_t k = 0; k < n; ++k) {
          const char h = s[i + k];
          if (!absl::ascii_isxdigit(h)) return Error(line, "bad hex escape in a quoted scalar");
          cp = cp * 16 + (absl::ascii_isdigit(h) ? h - '0' : absl::ascii_tolower(h) - 'a' + 10);
        }
        if (cp > 0x10FFFF) return Error(line, "escape out of the Unicode range");
        AppendUtf8(cp, out);
        i += n;
        break;
      }
      default:
        return Error(line, absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
    }
  }
  return Error(line, "unterminated quoted scalar (multi-line scalars are not supported)");
}

absl::Status Unsupported(int line, char c) {
  switch (c) {
    case '&': case '*': return Error(line, "anchors and aliases (& and *) are not supported");
    case '!': return Error(line, "tags (!) are not supported");
    case '|': case '>': return Error(line, "block scalars (| and >) are not supported");
    case '?': return Error(line, "complex keys (?) are not supported");
    default: return Error(line, absl::StrCat("a plain scalar cannot start with '", std::string(1, c), "'"));
  }
}

bool Reserved(char c) {
  return c == '&' || c == '*' || c == '!' || c == '|' || c == '>' || c == '?' || c == '@' ||
         c == '`';
}

// One-line flow collections: [a, b], {a: 1, b: [x]}.
class FlowParser {
 public:
  FlowParser(absl::string_view s, int line) : s_(s), line_(line) {}

  absl::StatusOr<Value> ParseAll() {
    absl::StatusOr<Value> v = Node(0);
    if (!v.ok()) return v;
    SkipSpaces();
    if (pos_ != s_.size()) {
      return Error(line_, absl::StrCat("unexpected '", s_.substr(pos_), "' after a flow collection"));
    }
    return v;
  }

 private:
  void SkipSpaces() {
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }

  // A plain scalar ends at a flow indicator; in a key also at ':'.
  std::string Plain(bool key) {
    const size_t begin = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != ']' && s_[pos_] != '}' &&
           !(key && s_[pos_] == ':') && s_[pos_] != '[' && s_[pos_] != '{') {
      ++pos_;
    }
    return std::string(absl::StripAsciiWhitespace(s_.substr(begin, pos_ - begin)));
  }

  absl::StatusOr<Value> Node(int depth) {
    if (depth > kMaxDepth) return Error(line_, "nesting too deep");
    SkipSpaces();
    if (pos_ >= s_.size()) return Error(line_, "flow collection ends too early (one line only)");
    const char c = s_[pos_];
    if (c == '[') return List(depth);
    if (c == '{') return Map(depth);
    if (c == '"' || c == '\'') {
      absl::StatusOr<std::string> q = Quoted(s_, &pos_, line_);
      if (!q.ok()) return q.status();
      Value v;
      v.set_string_value(*std::move(q));
      return v;
    }
    if (Reserved(c)) return Unsupported(line_, c);
    const std::string plain = Plain(false);
    if (plain.empty()) return Error(line_, "empty entry in a flow collection");
    return PlainScalar(plain);
  }

  absl::StatusOr<Value> List(int depth) {
    ++pos_;  // '['
    Value v;
    v.mutable_list_value();
    SkipSpaces();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return v;
    }
    while (true) {
      absl::StatusOr<Value> item = Node(depth + 1);
      if (!item.ok()) return item;
      *v.mutable_list_value()->add_values() = *std::move(item);
      SkipSpaces();
      if (pos_ >= s_.size()) return Error(line_, "missing ']' (flow collections are one line)");
      if (s_[pos_] == ']') {
        ++pos_;
        return v;
      }
      if (s_[pos_] != ',') return Error(line_, "expected ',' or ']' in a flow sequence");
      ++pos_;
      SkipSpaces();
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return v;
      }
    }
  }

  absl::StatusOr<Value> Map(int depth) {
    ++pos_;  // '{'
    Value v;
    auto& fields = *v.mutable_struct_value()->mutable_fields();
    SkipSpaces();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return v;
    }
    while (true) {
      SkipSpaces();
      std::string key;
      if (pos_ < s_.size() && (s_[pos_] == '"' || s_[pos_] == '\'')) {
        absl::StatusOr<std::string> q = Quoted(s_, &pos_, line_);
        if (!q.ok()) return q.status();
        key = *std::move(q);
        SkipSpaces();
      } else {
        key = Plain(true);
        if (key.empty()) return Error(line_, "empty key in a flow mapping");
      }
      if (pos_ >= s_.size() || s_[pos_] != ':') {
        return Error(line_, absl::StrCat("expected ':' after key '", key, "'"));
      }
      ++pos_;
      if (fields.count(key) > 0) return Error(line_, absl::StrCat("duplicate key '", key, "'"));
      SkipSpaces();
      Value item = Null();
      if (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != '}') {
        absl::StatusOr<Value> parsed = Node(depth + 1);
        if (!parsed.ok()) return parsed;
        item = *std::move(parsed);
      }
      fields[key] = std::move(item);
      SkipSpaces();
      if (pos_ >= s_.size()) return Error(line_, "missing '}' (flow collections are one line)");
      if (s_[pos_] == '}') {
        ++pos_;
        return v;
      }
      if (s_[pos_] != ',') return Error(line_, "expected ',' or '}' in a flow mapping");
      ++pos_;
      SkipSpaces();
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return v;
      }
    }
  }

  absl::string_view s_;
  int line_;
  size_t pos_ = 0;
};

// A value written on one line: a flow collection, a quoted scalar or a plain scalar.
absl::StatusOr<Value> Inline(absl::string_view text, int line) {
  const char c = text[0];
  if (c == '[' || c == '{') return FlowParser(text, line).ParseAll();
  if (c == '"' || c == '\'') {
    size_t pos = 0;
    absl::StatusOr<std::string> q = Quoted(text, &pos, line);
    if (!q.ok()) return q.status();
    if (!absl::StripAsciiWhitespace(text.substr(pos)).empty()) {
      return Error(line, "unexpected text after a quoted scalar");
    }
    Value v;
    v.set_string_value(*std::move(q));
    return v;
  }
  if (Reserved(c)) return Unsupported(line, c);
  if (text == "-" || absl::StartsWith(text, "- ")) {
    return Error(line, "a sequence cannot start on a key's line; put '- item' on the next lines");
  }
  return PlainScalar(text);
}

bool IsSequenceItem(absl::string_view text) {
  return text == "-" || absl::StartsWith(text, "- ");
}

// Splits "key: rest" (key plain or quoted); false when the line is not a mapping entry.
absl::StatusOr<bool> SplitKey(absl::string_view text, int line, std::string* key,
                              std::string* rest) {
  size_t after_key = 0;
  if (text[0] == '"' || text[0] == '\'') {
    size_t pos = 0;
    absl::StatusOr<std::string> q = Quoted(text, &pos, line);
    if (!q.ok()) return q.status();
    while (pos < text.size() && text[pos] == ' ') ++pos;
    if (pos >= text.size() || text[pos] != ':' ||
        (pos + 1 < text.size() && text[pos + 1] != ' ')) {
      return false;
    }
    *key = *std::move(q);
    after_key = pos + 1;
  } else {
    if (text[0] == '[' || text[0] == '{') return false;
    size_t colon = 0;
    while (true) {
      colon = text.find(':', colon);
      if (colon == absl::string_view::npos) return false;
      if (colon + 1 == text.size() || text[colon + 1] == ' ') break;
      ++colon;
    }
    *key = std::string(absl::StripTrailingAsciiWhitespace(text.substr(0, colon)));
    if (key->empty()) return Error(line, "empty key");
    if (Reserved((*key)[0])) return Unsupported(line, (*key)[0]);
    after_key = colon + 1;
  }
  *rest = std::string(absl::StripAsciiWhitespace(text.substr(after_key)));
  return true;
}

class BlockParser {
 public:
  explicit BlockParser(std::vector<Line> lines) : lines_(std::move(lines)) {}

  absl::StatusOr<Value> ParseDocument() {
    if (lines_.empty()) return Null();
    size_t i = 0;
    absl::StatusOr<Value> v = Node(i, 0);
    if (!v.ok()) return v;
    if (i < lines_.size()) return Error(lines_[i].number, "unexpected line (check indentation)");
    return v;
  }

 private:
  // The node whose first line is lines_[i]; leaves i at the first line after it.
  absl::StatusOr<Value> Node(size_t& i, int depth) {
    if (depth > kMaxDepth) return Error(lines_[i].number, "nesting too deep");
    const Line& line = lines_[i];
    if (IsSequenceItem(line.text)) return Sequence(i, depth);
    std::string key;
    std::string rest;
    absl::StatusOr<bool> is_entry = SplitKey(line.text, line.number, &key, &rest);
    if (!is_entry.ok()) return is_entry.status();
    if (*is_entry) return Mapping(i, depth);
    absl::StatusOr<Value> v = Inline(line.text, line.number);
    ++i;
    if (v.ok() && i < lines_.size() && lines_[i].indent > line.indent) {
      return Error(lines_[i].number,
                   "unexpected indentation (multi-line scalars are not supported)");
    }
    return v;
  }

  absl::StatusOr<Value> Sequence(size_t& i, int depth) {
    const int indent = lines_[i].indent;
    Value v;
    v.mutable_list_value();
    while (i < lines_.size() && lines_[i].indent == indent && IsSequenceItem(lines_[i].text)) {
      Line& line = lines_[i];
      const absl::string_view after_dash = absl::string_view(line.text).substr(1);
      const absl::string_view item_text = absl::StripLeadingAsciiWhitespace(after_dash);
      Value item = Null();
      if (item_text.empty()) {
        ++i;
        if (i < lines_.size() && lines_[i].indent > indent) {
          absl::StatusOr<Value> nested = Node(i, depth + 1);
          if (!nested.ok()) return nested;
          item = *std::move(nested);
        }
      } else {
        // "- key: value" opens a node indented at the item's text: rewrite the line as that node.
        line.indent = indent + 1 + static_cast<int>(after_dash.size() - item_text.size());
        line.text = std::string(item_text);
        absl::StatusOr<Value> nested = Node(i, depth + 1);
        if (!nested.ok()) return nested;
        item = *std::move(nested);
      }
      *v.mutable_list_value()->add_values() = std::move(item);
    }
    if (i < lines_.size() && lines_[i].indent > indent) {
      return Error(lines_[i].number, "unexpected indentation");
    }
    return v;
  }

  absl::StatusOr<Value> Mapping(size_t& i, int depth) {
    const int indent = lines_[i].indent;
    Value v;
    auto& fields = *v.mutable_struct_value()->mutable_fields();
    while (i < lines_.size() && lines_[i].indent == indent && !IsSequenceItem(lines_[i].text)) {
      const Line& line = lines_[i];
      std::string key;
      std::string rest;
      absl::StatusOr<bool> is_entry = SplitKey(line.text, line.number, &key, &rest);
      if (!is_entry.ok()) return is_entry.status();
      if (!*is_entry) return Error(line.number, "expected 'key: value'");
      if (fields.count(key) > 0) return Error(line.number, absl::StrCat("duplicate key '", key, "'"));
      Value item = Null();
      if (!rest.empty()) {
        absl::StatusOr<Value> parsed = Inline(rest, line.number);
        if (!parsed.ok()) return parsed;
        item = *std::move(parsed);
        ++i;
      } else {
        ++i;
        if (i < lines_.size() && (lines_[i].indent > indent ||
                                  (lines_[i].indent == indent &&
                                   IsSequenceItem(lines_[i].text)))) {
          absl::StatusOr<Value> nested = Node(i, depth + 1);
          if (!nested.ok()) return nested;
          item = *std::move(nested);
        }
      }
      fields[key] = std::move(item);
      if (i < lines_.size() && lines_[i].indent > indent) {
        return Error(lines_[i].number,
                     rest.empty() ? "unexpected indentation"
                                  : "unexpected indentation (multi-line scalars are not supported)");
      }
    }
    return v;
  }

  std::vector<Line> lines_;
};

// Where a comment starts ('#' at the start or after a space, outside quotes), or npos.
size_t CommentStart(absl::string_view s) {
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quote != 0) {
      if (quote == '"' && c == '\\') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    const bool token_start = i == 0 || s[i - 1] == ' ' || s[i - 1] == '[' || s[i - 1] == '{' ||
                             s[i - 1] == ',';
    if ((c == '"' || c == '\'') && token_start) {
      quote = c;
    } else if (c == '#' && (i == 0 || s[i - 1] == ' ')) {
      return i;
    }
  }
  return absl::string_view::npos;
}

}  // namespace

absl::StatusOr<google::protobuf::Value> ParseYamlSubset(absl::string_view text) {
  std::vector<Line> lines;
  int number = 0;
  bool started = false;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    absl::ConsumeSuffix(&raw, "\r");
    if (number == 1) absl::ConsumePrefix(&raw, "\xEF\xBB\xBF");  // UTF-8 byte order mark.
    int indent = 0;
    while (static_cast<size_t>(indent) < raw.size() && raw[indent] == ' ') ++indent;
    absl::string_view body = raw.substr(indent);
    if (!body.empty() && body[0] == '\t') {
      return Error(number, "tab in indentation (indent with spaces)");
    }
    const size_t comment = CommentStart(body);
    if (comment != absl::string_view::npos) body = body.substr(0, comment);
    body = absl::StripTrailingAsciiWhitespace(body);
    if (body.empty()) continue;
    if (indent == 0 && (body == "---" || absl::StartsWith(body, "--- "))) {
      if (started) return Error(number, "several documents in one file are not supported");
      started = true;
      body = absl::StripLeadingAsciiWhitespace(body.substr(3));
      if (body.empty()) continue;
    }
    if (indent == 0 && body == "...") break;
    if (indent == 0 && body[0] == '%') return Error(number, "directives (%) are not supported");
    started = true;
    lines.push_back({number, indent, std::string(body)});
  }
  return BlockParser(std::move(lines)).ParseDocument();
}

}  // namespace prewarm::ctl
