"""Tests of proto/lint_proto.py: one fixture per rule, a clean fixture, the CLI, the real API.

Run from the repository root with: /usr/bin/python3 -m pytest tests/proto -q
"""
from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "proto" / "lint_proto.py"

_spec = importlib.util.spec_from_file_location("lint_proto", SCRIPT)
lint_proto = importlib.util.module_from_spec(_spec)
sys.modules["lint_proto"] = lint_proto  # dataclasses need the module registered
_spec.loader.exec_module(lint_proto)

pytestmark = pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed")

# A documented, buf-clean file: nested types, a map, a real oneof and a proto3 optional field
# (whose synthetic oneof "_hint" must be ignored), an import that is used.
CLEAN = """\
// A clean fixture.
syntax = "proto3";

package acme.v1;

import "google/protobuf/timestamp.proto";
{imports}
// Serves things.
service ThingService {{
  // Gets a thing.
  rpc GetThing(GetThingRequest) returns (GetThingResponse);
  // Streams things.
  rpc ThingServiceWatch(ThingServiceWatchRequest) returns (stream ThingServiceWatchResponse);
}}

// Request of GetThing.
message GetThingRequest {{
  // The id.
  string thing_id = 1;
  // An optional hint.
  optional int32 hint = 2;
  // What to get.
  oneof choice {{
    // By name.
    string name = 3;
    // By number.
    int64 number = 4;
  }}
  // Labels.
  map<string, Inner> labels = 5;
  // A nested message.
  message Inner {{
    // Its kind.
    Kind kind = 1;
    // The 90th percentile.
    int64 p90 = 2;
  }}
  // A nested enum.
  enum Kind {{
    // Not set.
    KIND_UNSPECIFIED = 0;
    // The first kind.
    KIND_ONE = 1;
  }}
}}

// Response of GetThing.
message GetThingResponse {{
  // When it was made.
  google.protobuf.Timestamp create_time = 1;
}}

// Request of Watch.
message ThingServiceWatchRequest {{}}

// Response of Watch.
message ThingServiceWatchResponse {{}}
{extra}"""


def clean(extra: str = "", imports: str = "") -> str:
    return CLEAN.format(extra=extra, imports=imports)


def documented_message(name: str, options: str = "", package: str = "acme.v1") -> str:
    return (f'// A fixture.\nsyntax = "proto3";\n\npackage {package};\n{options}\n'
            f"// A message.\nmessage {name} {{\n  // A field.\n  string value = 1;\n}}\n")


def lint_tree(root: pathlib.Path, files: dict[str, str]) -> list:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return lint_proto.lint_protos([str(root)], list(files))


def rules(violations: list) -> set[str]:
    return {v.rule for v in violations}


def test_clean_fixture_passes(tmp_path: pathlib.Path) -> None:
    assert lint_tree(tmp_path, {"acme/v1/thing.proto": clean()}) == []


# (rule expected, extra text appended to CLEAN, all rules expected to fire)
EXTRA_CASES = {
    "ENUM_PASCAL_CASE": ("// E.\nenum color_name {\n  // Z.\n  COLOR_NAME_UNSPECIFIED = 0;\n}\n",
                         {"ENUM_PASCAL_CASE"}),
    "ENUM_VALUE_UPPER_SNAKE_CASE": (
        "// E.\nenum Color {\n  // Z.\n  COLOR_UNSPECIFIED = 0;\n  // R.\n  COLOR_red = 1;\n}\n",
        {"ENUM_VALUE_UPPER_SNAKE_CASE"}),
    "ENUM_VALUE_PREFIX": (
        "// E.\nenum Color {\n  // Z.\n  COLOR_UNSPECIFIED = 0;\n  // R.\n  RED = 1;\n}\n",
        {"ENUM_VALUE_PREFIX"}),
    "ENUM_VALUE_PREFIX_NESTED": (
        "// M.\nmessage Box {\n  // E.\n  enum BoxColor {\n    // Z.\n    COLOR_UNSPECIFIED = 0;\n"
        "  }\n}\n", {"ENUM_VALUE_PREFIX"}),
    "ENUM_ZERO_VALUE_SUFFIX": ("// E.\nenum Color {\n  // Z.\n  COLOR_NONE = 0;\n}\n",
                               {"ENUM_ZERO_VALUE_SUFFIX"}),
    "ENUM_NO_ALLOW_ALIAS": (
        "// E.\nenum Color {\n  option allow_alias = true;\n  // Z.\n  COLOR_UNSPECIFIED = 0;\n"
        "  // R.\n  COLOR_RED = 1;\n  // R again.\n  COLOR_ROUGE = 1;\n}\n",
        {"ENUM_NO_ALLOW_ALIAS"}),
    "FIELD_LOWER_SNAKE_CASE": ("// M.\nmessage Box {\n  // F.\n  string itemName = 1;\n}\n",
                               {"FIELD_LOWER_SNAKE_CASE"}),
    "FIELD_NO_DESCRIPTOR": ("// M.\nmessage Box {\n  // F.\n  string descriptor = 1;\n}\n",
                            {"FIELD_NO_DESCRIPTOR"}),
    "MESSAGE_PASCAL_CASE": ("// M.\nmessage box_info {\n  // F.\n  string name = 1;\n}\n",
                            {"MESSAGE_PASCAL_CASE"}),
    "MESSAGE_PASCAL_CASE_NESTED": (
        "// M.\nmessage Box {\n  // N.\n  message inner_box {}\n}\n", {"MESSAGE_PASCAL_CASE"}),
    "ONEOF_LOWER_SNAKE_CASE": (
        "// M.\nmessage Box {\n  // O.\n  oneof myChoice {\n    // F.\n    string a = 1;\n  }\n}\n",
        {"ONEOF_LOWER_SNAKE_CASE"}),
    "SYNTHETIC_ONEOF_IGNORED": (  # the oneof "_someValue" is protoc's, only the field is wrong
        "// M.\nmessage Box {\n  // F.\n  optional int32 someValue = 1;\n}\n",
        {"FIELD_LOWER_SNAKE_CASE"}),
    "SERVICE_PASCAL_CASE": ("// S.\nservice other_Service {}\n", {"SERVICE_PASCAL_CASE"}),
    "SERVICE_SUFFIX": ("// S.\nservice Other {}\n", {"SERVICE_SUFFIX"}),
    "RPC_PASCAL_CASE": (
        "// S.\nservice OtherService {\n  // R.\n  rpc get_other(GetOtherRequest) returns "
        "(GetOtherResponse);\n}\n// Q.\nmessage GetOtherRequest {}\n// A.\n"
        "message GetOtherResponse {}\n", {"RPC_PASCAL_CASE"}),
    "RPC_REQUEST_STANDARD_NAME": (
        "// S.\nservice OtherService {\n  // R.\n  rpc Ping(PingReq) returns (PingResponse);\n}\n"
        "// Q.\nmessage PingReq {}\n// A.\nmessage PingResponse {}\n",
        {"RPC_REQUEST_STANDARD_NAME"}),
    "RPC_RESPONSE_STANDARD_NAME": (
        "// S.\nservice OtherService {\n  // R.\n  rpc Ping(PingRequest) returns (Pong);\n}\n"
        "// Q.\nmessage PingRequest {}\n// A.\nmessage Pong {}\n", {"RPC_RESPONSE_STANDARD_NAME"}),
    "RPC_REQUEST_RESPONSE_UNIQUE": (
        "// S.\nservice OtherService {\n  // R.\n  rpc Ping(PingRequest) returns (PingResponse);\n"
        "  // R2.\n  rpc Pong(PingRequest) returns (PongResponse);\n}\n// Q.\nmessage PingRequest {}"
        "\n// A.\nmessage PingResponse {}\n// A2.\nmessage PongResponse {}\n",
        {"RPC_REQUEST_RESPONSE_UNIQUE", "RPC_REQUEST_STANDARD_NAME"}),
    "RPC_REQUEST_RESPONSE_UNIQUE_SAME": (
        "// S.\nservice OtherService {\n  // R.\n  rpc Echo(EchoRequest) returns (EchoRequest);\n}\n"
        "// Q.\nmessage EchoRequest {}\n",
        {"RPC_REQUEST_RESPONSE_UNIQUE", "RPC_RESPONSE_STANDARD_NAME"}),
    "COMMENT_SERVICE": ("service BareService {}\n", {"COMMENT_SERVICE"}),
    "COMMENT_RPC": (
        "// S.\nservice OtherService {\n  rpc Ping(PingRequest) returns (PingResponse);\n}\n"
        "// Q.\nmessage PingRequest {}\n// A.\nmessage PingResponse {}\n", {"COMMENT_RPC"}),
    "COMMENT_MESSAGE": ("message Bare {}\n", {"COMMENT_MESSAGE"}),
    "COMMENT_MESSAGE_NESTED": ("// M.\nmessage Box {\n  message Inner {}\n}\n",
                               {"COMMENT_MESSAGE"}),
    "COMMENT_MESSAGE_TRAILING_ONLY": ("message Bare {} // Trailing does not count.\n",
                                      {"COMMENT_MESSAGE"}),
    "COMMENT_MESSAGE_DETACHED_ONLY": ("// Detached does not count.\n\nmessage Bare {}\n",
                                      {"COMMENT_MESSAGE"}),
    "COMMENT_MESSAGE_BLANK": ("//   \nmessage Bare {}\n", {"COMMENT_MESSAGE"}),
    "COMMENT_FIELD": ("// M.\nmessage Box {\n  string name = 1;\n}\n", {"COMMENT_FIELD"}),
    "COMMENT_ENUM": ("enum Color {\n  // Z.\n  COLOR_UNSPECIFIED = 0;\n}\n", {"COMMENT_ENUM"}),
    "COMMENT_ENUM_VALUE": ("// E.\nenum Color {\n  COLOR_UNSPECIFIED = 0;\n}\n",
                           {"COMMENT_ENUM_VALUE"}),
    "COMMENT_ONEOF": (
        "// M.\nmessage Box {\n  oneof choice {\n    // F.\n    string a = 1;\n  }\n}\n",
        {"COMMENT_ONEOF"}),
    "COMMENT_ONEOF_SYNTHETIC_IGNORED": (
        "// M.\nmessage Box {\n  // F.\n  optional string a = 1;\n}\n", set()),
}


@pytest.mark.parametrize("case", sorted(EXTRA_CASES))
def test_rule_fires_on_appended_element(tmp_path: pathlib.Path, case: str) -> None:
    extra, expected = EXTRA_CASES[case]
    found = lint_tree(tmp_path, {"acme/v1/thing.proto": clean(extra=extra)})
    assert rules(found) == expected, "\n".join(map(str, found))


DURATION_FIELD = "// M.\nmessage Box {\n  // F.\n  google.protobuf.Duration ttl = 1;\n}\n"


@pytest.mark.parametrize("rule,imports,extra", [
    ("IMPORT_NO_PUBLIC", 'import public "google/protobuf/duration.proto";', DURATION_FIELD),
    ("IMPORT_NO_WEAK", 'import weak "google/protobuf/duration.proto";', DURATION_FIELD),
    ("IMPORT_USED", 'import "google/protobuf/duration.proto";', ""),
])
def test_import_rules(tmp_path: pathlib.Path, rule: str, imports: str, extra: str) -> None:
    found = lint_tree(tmp_path, {"acme/v1/thing.proto": clean(extra=extra, imports=imports)})
    assert rules(found) == {rule}, "\n".join(map(str, found))


def test_import_used_through_custom_option_and_public_reexport(tmp_path: pathlib.Path) -> None:
    options = ('// Options.\nsyntax = "proto3";\n\npackage acme.v1;\n\n'
               'import "google/protobuf/descriptor.proto";\n\n'
               "// Ext.\nextend google.protobuf.MethodOptions {\n  // A custom option.\n"
               "  string audit = 50001;\n}\n")
    reexport = ('// Reexport.\nsyntax = "proto3";\n\npackage acme.v1;\n\n'
                'import public "google/protobuf/duration.proto";\n')
    extra = ("// S.\nservice OtherService {\n  // R.\n  rpc Ping(PingRequest) returns (PingResponse) "
             '{\n    option (acme.v1.audit) = "yes";\n  }\n}\n// Q.\nmessage PingRequest {}\n'
             "// A.\nmessage PingResponse {}\n" + DURATION_FIELD)
    imports = 'import "acme/v1/options.proto";\nimport "acme/v1/reexport.proto";'
    files = {"acme/v1/options.proto": options, "acme/v1/reexport.proto": reexport,
             "acme/v1/thing.proto": clean(extra=extra, imports=imports)}
    found = lint_tree(tmp_path, files)
    # Only the re-exporting file itself is flagged, for being public, not for being unused.
    assert [(v.path, v.rule) for v in found] == [("acme/v1/reexport.proto", "IMPORT_NO_PUBLIC")]


PROTO2_ENUM = """\
// Proto2.
syntax = "proto2";

package acme.v1;

// Colors.
enum Color {
  // Red.
  COLOR_RED = 1;
  // Unset.
  COLOR_UNSPECIFIED = 0;
}
"""
NO_SYNTAX = "package acme.v1;\n\n// M.\nmessage Thing {\n  // F.\n  optional string name = 1;\n}\n"


@pytest.mark.parametrize("rule,files,expected", [
    ("ENUM_FIRST_VALUE_ZERO", {"acme/v1/color.proto": PROTO2_ENUM}, {"ENUM_FIRST_VALUE_ZERO"}),
    ("SYNTAX_SPECIFIED", {"acme/v1/thing.proto": NO_SYNTAX}, {"SYNTAX_SPECIFIED"}),
    ("FILE_LOWER_SNAKE_CASE", {"acme/v1/ThingAPI.proto": clean()}, {"FILE_LOWER_SNAKE_CASE"}),
    ("PACKAGE_DEFINED", {"thing.proto": documented_message("Thing").replace(
        "package acme.v1;", "")}, {"PACKAGE_DEFINED"}),
    ("PACKAGE_DIRECTORY_MATCH", {"acme/v2/thing.proto": clean()}, {"PACKAGE_DIRECTORY_MATCH"}),
    ("PACKAGE_LOWER_SNAKE_CASE", {"Acme/v1/thing.proto": documented_message(
        "Thing", package="Acme.v1")}, {"PACKAGE_LOWER_SNAKE_CASE"}),
    ("PACKAGE_VERSION_SUFFIX", {"acme/thing.proto": documented_message(
        "Thing", package="acme")}, {"PACKAGE_VERSION_SUFFIX"}),
    ("DIRECTORY_SAME_PACKAGE", {
        "acme/v1/a.proto": documented_message("A"),
        "acme/v1/b.proto": documented_message("B", package="acme.v2")},
     {"DIRECTORY_SAME_PACKAGE", "PACKAGE_DIRECTORY_MATCH"}),
    ("PACKAGE_SAME_DIRECTORY", {
        "acme/v1/a.proto": documented_message("A"),
        "acme/v1/sub/b.proto": documented_message("B")},
     {"PACKAGE_SAME_DIRECTORY", "PACKAGE_DIRECTORY_MATCH"}),
])
def test_file_and_package_rules(tmp_path: pathlib.Path, rule: str, files: dict[str, str],
                                expected: set[str]) -> None:
    found = lint_tree(tmp_path, files)
    assert rule in expected
    assert rules(found) == expected, "\n".join(map(str, found))


def test_explicit_proto2_syntax_is_specified(tmp_path: pathlib.Path) -> None:
    found = lint_tree(tmp_path, {"acme/v1/thing.proto": 'syntax = "proto2";\n' + NO_SYNTAX})
    assert found == []


@pytest.mark.parametrize("rule,first,second", [
    ("PACKAGE_SAME_CSHARP_NAMESPACE", 'option csharp_namespace = "Acme.V1";', ""),
    ("PACKAGE_SAME_GO_PACKAGE", 'option go_package = "acme/v1;a";',
     'option go_package = "acme/v1;b";'),
    ("PACKAGE_SAME_JAVA_MULTIPLE_FILES", "option java_multiple_files = true;", ""),
    ("PACKAGE_SAME_JAVA_PACKAGE", 'option java_package = "com.acme.v1";',
     'option java_package = "com.acme";'),
    ("PACKAGE_SAME_PHP_NAMESPACE", 'option php_namespace = "Acme\\\\V1";', ""),
    ("PACKAGE_SAME_RUBY_PACKAGE", 'option ruby_package = "Acme::V1";', ""),
    ("PACKAGE_SAME_SWIFT_PREFIX", 'option swift_prefix = "AC";', 'option swift_prefix = "AX";'),
])
def test_package_same_option(tmp_path: pathlib.Path, rule: str, first: str, second: str) -> None:
    files = {"acme/v1/a.proto": documented_message("A", first),
             "acme/v1/b.proto": documented_message("B", second)}
    found = lint_tree(tmp_path, files)
    assert rules(found) == {rule}, "\n".join(map(str, found))
    assert {v.path for v in found} == set(files)


def test_same_option_value_in_all_files_passes(tmp_path: pathlib.Path) -> None:
    option = 'option go_package = "acme/v1;acmev1";'
    files = {"acme/v1/a.proto": documented_message("A", option),
             "acme/v1/b.proto": documented_message("B", option)}
    assert lint_tree(tmp_path, files) == []


def test_positions_and_format(tmp_path: pathlib.Path) -> None:
    extra = "// M.\nmessage Box {\n  // N.\n  message Inner {\n    // F.\n    string badName = 1;\n  }\n}\n"
    text = clean(extra=extra)
    found = lint_tree(tmp_path, {"acme/v1/thing.proto": text})
    line = text.splitlines().index("    string badName = 1;") + 1
    assert [str(v) for v in found] == [
        f'acme/v1/thing.proto:{line}:12: FIELD_LOWER_SNAKE_CASE: Field name "badName" should be '
        'lower_snake_case, such as "bad_name".']


def test_case_helpers_match_buf() -> None:
    assert lint_proto.to_lower_snake("fooBarBaz") == "foo_bar_baz"
    assert lint_proto.to_lower_snake("start_time_p10") == "start_time_p10"
    assert lint_proto.to_lower_snake("HTTPServer") == "http_server"
    assert lint_proto.to_upper_snake("WarmupMode") == "WARMUP_MODE"
    assert lint_proto.to_pascal("get_thing") == "GetThing"
    assert lint_proto.to_pascal("HTTPService") == "HTTPService"
    for good in ("a.v1", "a.b.v2", "a.v1beta1", "a.v1alpha", "a.v1p1alpha1", "a.v1test",
                 "a.v1testfoo"):
        assert lint_proto.valid_version_suffix(good), good
    for bad in ("v1", "a", "a.v", "a.v0", "a.version1", "a.v1alphabeta1", "a.v1foo", "a.vtest"):
        assert not lint_proto.valid_version_suffix(bad), bad


# ------------------------------------------------------------------------------------ CLI

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          check=False)


def test_cli_exit_codes(tmp_path: pathlib.Path) -> None:
    lint_tree(tmp_path, {"acme/v1/good.proto": clean(),
                         "acme/v1/bad.proto": documented_message("bad_msg")})
    (tmp_path / "acme/v1/broken.proto").write_text('syntax = "proto3";\nmessage {\n')
    good = run_cli("--proto_path", str(tmp_path), str(tmp_path / "acme/v1/good.proto"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().endswith("0 violation(s) in 1 file(s) checked")

    bad = run_cli("--proto_path", str(tmp_path), "acme/v1/bad.proto")
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("acme/v1/bad.proto:7:9: MESSAGE_PASCAL_CASE: ")
    assert lines[-1].endswith("1 violation(s) in 1 file(s) checked")

    assert run_cli("--proto_path", str(tmp_path), "acme/v1/broken.proto").returncode == 2
    assert run_cli("--proto_path", str(tmp_path), "acme/v1/missing.proto").returncode == 2
    assert run_cli("acme/v1/good.proto").returncode == 2
    assert run_cli("--protoc", "/nonexistent/protoc", "-I", str(tmp_path),
                   "acme/v1/good.proto").returncode == 2


def test_cli_descriptor_set_mode(tmp_path: pathlib.Path) -> None:
    lint_tree(tmp_path, {"acme/v1/bad.proto": documented_message("bad_msg")})
    out = tmp_path / "set.pb"
    subprocess.run(["protoc", f"--proto_path={tmp_path}", "--include_imports",
                    "--include_source_info", f"--descriptor_set_out={out}", "acme/v1/bad.proto"],
                   check=True)
    result = run_cli("--descriptor_set", str(out), "--files", "acme/v1/bad.proto")
    assert result.returncode == 1
    assert result.stdout.startswith("acme/v1/bad.proto:7:9: MESSAGE_PASCAL_CASE: ")
    assert run_cli("--descriptor_set", str(out), "--files", "other.proto").returncode == 2


# ------------------------------------------------------------------------------ real API

def test_real_api_is_clean() -> None:
    found = lint_proto.lint_protos([str(REPO / "proto")], ["prewarm/v1/prewarm.proto"])
    assert found == [], "\n".join(map(str, found))
