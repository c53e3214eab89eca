// ParseYaml: YAML (yaml-cpp) into google.protobuf.Value, scalars typed by the core schema, with
// bounds against alias bombs and errors that name the line.
#include "clients/cpp/yaml_value.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/cpp/input_files.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace prewarm::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The parsed value as JSON with object keys sorted (google.protobuf.Struct keeps no order), or
// the error message.
std::string YamlAsJson(absl::string_view yaml, const YamlLimits& limits = {}) {
  absl::StatusOr<google::protobuf::Value> v = ParseYaml(yaml, limits);
  if (!v.ok()) {
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(v.status().message());
  }
  std::function<std::string(const google::protobuf::Value&)> sorted =
      [&](const google::protobuf::Value& value) -> std::string {
    if (value.has_struct_value()) {
      std::map<std::string, const google::protobuf::Value*> fields;
      for (const auto& [k, f] : value.struct_value().fields()) fields[k] = &f;
      std::vector<std::string> parts;
      for (const auto& [k, f] : fields) parts.push_back(absl::StrCat("\"", k, "\":", sorted(*f)));
      return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
    }
    if (value.has_list_value()) {
      std::vector<std::string> parts;
      for (const auto& f : value.list_value().values()) parts.push_back(sorted(f));
      return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
    }
    std::string json;
    EXPECT_TRUE(google::protobuf::util::MessageToJsonString(value, &json).ok());
    return json;
  };
  return sorted(*v);
}

// What the hand-written subset read, yaml-cpp reads the same.
TEST(PrewarmctlYamlTest, BlockAndFlowCollectionsScalarsAndComments) {
  EXPECT_EQ(
      YamlAsJson(R"(---
# comment
a: 1            # trailing comment
b: "two # not a comment"
c: 'it''s'
d: [x, "y", 3, {e: f}]
g:
- h: http://host:8080/warmup
  i: true
- - nested
  - ~
j:
  k: 1.5e3
  l:
  m: {}
n: it's plain
)"),
      "{\"a\":1,\"b\":\"two # not a comment\",\"c\":\"it's\",\"d\":[\"x\",\"y\",3,{\"e\":\"f\"}],"
      "\"g\":[{\"h\":\"http://host:8080/warmup\",\"i\":true},[\"nested\",null]],"
      "\"j\":{\"k\":1500,\"l\":null,\"m\":{}},\"n\":\"it's plain\"}");
  EXPECT_EQ(YamlAsJson("- a\n- \"\\u00e9\\n\"\n-\n  - b\n"), "[\"a\",\"é\\n\",[\"b\"]]");
  EXPECT_EQ(YamlAsJson(""), "null");
  EXPECT_EQ(YamlAsJson("# only a comment\n"), "null");
}

TEST(PrewarmctlYamlTest, BlockScalarsAndMultiLineScalarsAreStrings) {
  EXPECT_EQ(YamlAsJson("literal: |\n  line 1\n  line 2\nfolded: >\n  one\n  two\n"
                       "stripped: |-\n  42\nplain: a\n  continued\nquoted: \"x\n  y\"\n"),
            "{\"folded\":\"one two\\n\",\"literal\":\"line 1\\nline 2\\n\",\"plain\":\"a "
            "continued\",\"quoted\":\"x y\",\"stripped\":\"42\"}");
}

TEST(PrewarmctlYamlTest, AnchorsAndAliasesRepeatTheNode) {
  EXPECT_EQ(YamlAsJson("defaults: &d {keep_alive: 90s, concurrency: 1}\n"
                       "url: &u http://127.0.0.1/warmup\n"
                       "services:\n  - *d\n  - {url: *u}\n"),
            "{\"defaults\":{\"concurrency\":1,\"keep_alive\":\"90s\"},"
            "\"services\":[{\"concurrency\":1,\"keep_alive\":\"90s\"},"
            "{\"url\":\"http://127.0.0.1/warmup\"}],\"url\":\"http://127.0.0.1/warmup\"}");
}

TEST(PrewarmctlYamlTest, PlainScalarsAreTypedByTheCoreSchema) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"~", "null"},
      {"null", "null"},
      {"Null", "null"},
      {"NULL", "null"},
      {"", "null"},
      {"true", "true"},
      {"True", "true"},
      {"TRUE", "true"},
      {"false", "false"},
      {"FALSE", "false"},
      {"12", "12"},
      {"-3", "-3"},
      {"+7", "7"},
      {"007", "7"},
      {"0x1F", "31"},
      {"0o17", "15"},
      {"1.5", "1.5"},
      {"-2e3", "-2000"},
      {".5", "0.5"},
      {"1.", "1"},
      {"1E2", "100"},
      // YAML 1.1 forms and near misses stay strings.
      {"yes", "\"yes\""},
      {"off", "\"off\""},
      {"0b101", "\"0b101\""},
      {"1_000", "\"1_000\""},
      {"0x", "\"0x\""},
      {"0o8", "\"0o8\""},
      {"1e", "\"1e\""},
      {"12:30", "\"12:30\""},
      {"nulls", "\"nulls\""},
      {"tRue", "\"tRue\""},
      {"inf", "\"inf\""},
      {"nan", "\"nan\""},
      // Quoted and tagged scalars are strings, whatever they look like.
      {"'007'", "\"007\""},
      {"\"true\"", "\"true\""},
      {"'~'", "\"~\""},
      {"\"\"", "\"\""},
      {"!!str 12", "\"12\""},
      {"'.inf'", "\".inf\""},
  };
  for (const auto& [yaml, json] : cases) {
    EXPECT_EQ(YamlAsJson(absl::StrCat("v: ", yaml, "\n")), absl::StrCat("{\"v\":", json, "}"))
        << "v: " << yaml;
  }
}

TEST(PrewarmctlYamlTest, InfinityAndNanAreRefusedNamingTheKey) {
  EXPECT_EQ(YamlAsJson("run:\n  delay_cost_ratio: .inf\n"),
            "line 2: 'run.delay_cost_ratio' is .inf, which JSON cannot carry (numbers are "
            "finite); quote it for a string");
  EXPECT_THAT(YamlAsJson("tasks: [1, -.Inf]\n"), StartsWith("line 1: 'tasks[1]' is -.Inf,"));
  EXPECT_THAT(YamlAsJson(".NaN\n"), StartsWith("line 1: the document is .NaN,"));
  EXPECT_THAT(YamlAsJson("big: 1e999\n"), StartsWith("line 1: 'big' is 1e999,"));
}

TEST(PrewarmctlYamlTest, AliasBombsStopAtTheNodeCap) {
  // "Billion laughs": 10^9 strings from 400 bytes.
  std::string bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    absl::StrAppend(&bomb, std::string(1, c), ": &", std::string(1, c), " [");
    for (int i = 0; i < 10; ++i) absl::StrAppend(&bomb, i ? ", " : "", "*", std::string(1, c - 1));
    absl::StrAppend(&bomb, "]\n");
  }
  EXPECT_THAT(YamlAsJson(bomb), AllOf(StartsWith("line "),
                                      HasSubstr("the document expands to more than 1000000 nodes "
                                                "(aliases repeat what their anchor names)")));

  // The cap is exact: the root, two lists and two strings are 5 nodes.
  const std::string five = "- &x [a]\n- *x\n";
  EXPECT_EQ(YamlAsJson(five, {.max_nodes = 5}), "[[\"a\"],[\"a\"]]");
  EXPECT_THAT(YamlAsJson(five, {.max_nodes = 4}), HasSubstr("more than 4 nodes"));

  // Few nodes but long text: the bytes are capped too.
  const std::string text = absl::StrCat("- &t ", std::string(1000, 'x'), "\n- *t\n- *t\n");
  EXPECT_THAT(YamlAsJson(text, {.max_scalar_bytes = 3000}), StartsWith("[\"xxx"));
  // An alias is its anchor's node: the error names the anchor's line.
  EXPECT_EQ(YamlAsJson(text, {.max_scalar_bytes = 2999}),
            "line 1: the document expands to more than 2999 bytes of text (aliases repeat what "
            "their anchor names)");

  // An alias inside its own anchor would never end.
  EXPECT_EQ(YamlAsJson("a: &x [*x]\n"),
            "line 1: nesting deeper than 64 at 'a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
            "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
            "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]'");
}

TEST(PrewarmctlYamlTest, BadYamlNamesTheLine) {
  EXPECT_EQ(YamlAsJson("a: 1\na: 2\n"), "line 2: duplicate key 'a'");
  EXPECT_EQ(YamlAsJson("s:\n  - n: 1\n    n: 2\n"), "line 3: duplicate key 's[0].n'");
  EXPECT_EQ(YamlAsJson("a: 1\n   b: 2\n"), "line 2, column 5: illegal map value");
  EXPECT_EQ(YamlAsJson("a: [1, 2\n"), "line 2, column 1: end of sequence flow not found");
  EXPECT_EQ(YamlAsJson("a: 1\n---\nb: 2\n"),
            "line 3: a second document starts here; a file holds one (check the indentation)");
  EXPECT_THAT(YamlAsJson("- a\nb: 1\n"), StartsWith("line 2: a second document starts here"));
  EXPECT_EQ(YamlAsJson("services:\n\t- name: a\n"),
            "line 2: tab in indentation (indent with spaces)");
  EXPECT_EQ(YamlAsJson("x: 1\n? [a, b]\n: c\n"),
            "line 2: a key in the document is a collection; keys are scalars");
  EXPECT_EQ(YamlAsJson("m:\n  ~: 1\n"), "line 2: empty or null key in 'm' (quote it: \"null\")");
  // yaml-cpp 0.7 alone would emit nodes from this until memory ran out (dag_file_fuzz found it).
  EXPECT_EQ(YamlAsJson("\"a\", \"b: \"c"),
            "line 1: yaml-cpp cannot read this text (it does not end); check the quotes");
  // The budget that stops it leaves room for the densest documents.
  std::vector<std::string> empties(1000, "[]");
  EXPECT_EQ(YamlAsJson(absl::StrCat("[", absl::StrJoin(empties, ","), "]")),
            absl::StrCat("[", absl::StrJoin(empties, ","), "]"));
  std::vector<std::string> nulls(1000, "-");
  EXPECT_EQ(YamlAsJson(absl::StrJoin(nulls, "\n")),
            absl::StrCat("[", absl::StrJoin(std::vector<std::string>(1000, "null"), ","), "]"));
  EXPECT_EQ(YamlAsJson("a: !foo x\n"), "line 1: tag '!foo' at 'a' is not supported (only !!str)");
}

// Through the file reader: errors name the file and the line; anchors share settings.
TEST(PrewarmctlYamlTest, InputFilesReadAnchorsAndNameFileAndLine) {
  // Merge keys (<<) are YAML 1.1, not 1.2: an unknown field, named with its entry.
  absl::StatusOr<std::vector<v1::Service>> services =
      ParseServices("- &d {name: a, mode: WARMUP_MODE_DELEGATED}\n- {<<: *d, name: b}\n",
                    FileFormat::kYaml, "s.yaml");
  EXPECT_THAT(std::string(services.status().message()),
              AllOf(StartsWith("s.yaml: [1]: "), HasSubstr("<<")));

  services = ParseServices(
      "- {name: a, keep_alive: &k 90s, container_concurrency: &c 2}\n"
      "- {name: b, keep_alive: *k, container_concurrency: *c}\n",
      FileFormat::kYaml, "s.yaml");
  ASSERT_TRUE(services.ok()) << services.status();
  ASSERT_EQ(services->size(), 2u);
  EXPECT_EQ((*services)[1].keep_alive().seconds(), 90);
  EXPECT_EQ((*services)[1].container_concurrency(), 2);

  absl::StatusOr<v1::PrewarmRequest> run =
      ParseRun("run_id: r\ndelay_cost_ratio: .inf\n", FileFormat::kYaml, "dag.yaml");
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(run.status().message()),
              StartsWith("dag.yaml: YAML: line 2: 'delay_cost_ratio' is .inf"));
  run = ParseRun("run_id: r\ntasks: [\n", FileFormat::kYaml, "dag.yaml");
  EXPECT_THAT(std::string(run.status().message()),
              StartsWith("dag.yaml: YAML: line 3, column 1: "));
}

}  // namespace
}  // namespace prewarm::ctl
