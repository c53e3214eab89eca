#!/usr/bin/python3
"""Lint .proto files against buf's v1 STANDARD rules plus the COMMENTS category.

Why: `buf` cannot be installed in this build environment, but the API should still follow buf's
style rules (so it lints clean once buf is available) and every element should be documented.
This script runs `protoc --include_source_info` itself (or reads a ready FileDescriptorSet),
walks the descriptors of the named files (never their imports), and reports each violation as

    path/to/file.proto:LINE:COL: RULE_ID: message

with 1-based positions taken from source_code_info, followed by a summary line.
Exit status: 0 clean, 1 violations, 2 usage or protoc errors.

Rule semantics follow buf's buflintcheck (default options: enum zero value suffix "_UNSPECIFIED",
service suffix "Service", no same request/response type, google.protobuf.Empty not exempted).
FIELD_NO_DESCRIPTOR (dropped by buf v1) is kept deliberately. Comment-ignores are not supported.

Uses only the standard library and google.protobuf; run it with /usr/bin/python3.
"""
from __future__ import annotations

import argparse
import os
import posixpath
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

from google.protobuf import descriptor_pb2

FileProto = descriptor_pb2.FileDescriptorProto
Path = tuple[int, ...]

# descriptor.proto field numbers, used to build source_code_info paths.
FILE_PACKAGE, FILE_DEPENDENCY, FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 2, 3, 4, 5, 6
FILE_EXTENSION, FILE_OPTIONS, FILE_SYNTAX = 7, 8, 12
MSG_FIELD, MSG_NESTED, MSG_ENUM, MSG_EXTENSION, MSG_ONEOF = 2, 3, 4, 6, 8
NAME, ENUM_VALUE, ENUM_OPTIONS, ALLOW_ALIAS, VALUE_NUMBER = 1, 2, 3, 2, 2
SVC_METHOD, METHOD_INPUT, METHOD_OUTPUT = 2, 2, 3

# Rule id -> (FileOptions field name, FileOptions field number).
SAME_OPTION_RULES = {
    "PACKAGE_SAME_CSHARP_NAMESPACE": ("csharp_namespace", 37),
    "PACKAGE_SAME_GO_PACKAGE": ("go_package", 11),
    "PACKAGE_SAME_JAVA_MULTIPLE_FILES": ("java_multiple_files", 10),
    "PACKAGE_SAME_JAVA_PACKAGE": ("java_package", 1),
    "PACKAGE_SAME_PHP_NAMESPACE": ("php_namespace", 41),
    "PACKAGE_SAME_RUBY_PACKAGE": ("ruby_package", 45),
    "PACKAGE_SAME_SWIFT_PREFIX": ("swift_prefix", 39),
}
DELIMITERS = ".-_ \t\n\r"


class UsageError(Exception):
    """Bad arguments or a protoc failure: exit status 2."""


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.rule}: {self.message}"


# ---------------------------------------------------------------- case helpers (ports of buf's)

def to_snake_case(s: str) -> str:
    """buf's stringutil.toSnakeCase without new words on digits (so "p90" and "v1" stay)."""
    s = s.strip(DELIMITERS)
    out = ""
    for i, c in enumerate(s):
        if c in DELIMITERS:
            c = "_"
        if i == 0:
            out += c
        elif c.isupper() and out[-1] != "_" and (
            (i < len(s) - 1 and not (s[i + 1].isupper() or s[i + 1].isdigit())
             and s[i + 1] not in DELIMITERS)
            or s[i - 1].islower()
        ):
            out += "_" + c
        elif not (c == "_" and out[-1] == "_"):
            out += c
    return out


def to_lower_snake(s: str) -> str:
    return to_snake_case(s).lower()


def to_upper_snake(s: str) -> str:
    return to_snake_case(s).upper()


def to_pascal(s: str) -> str:
    out, previous = "", ""
    for i, c in enumerate(s.strip()):
        if c not in DELIMITERS:
            first = i == 0 or (previous != "" and previous in DELIMITERS)
            out += c.upper() if first or c.isupper() else c.lower()
        previous = c
    return out


def _positive(s: str) -> bool:
    return s.isdigit() and 0 < int(s) < 2**31


def valid_version_suffix(package: str) -> bool:
    """buf's protoversion: last component v1, v1beta1, v1p1alpha1, v2test, v1testfoo, ..."""
    parts = package.split(".")
    if len(parts) < 2 or len(parts[-1]) < 2 or parts[-1][0] != "v":
        return False
    version = parts[-1][1:]
    if "test" in version:
        return _positive(version.split("test", 1)[0])
    alpha, beta = "alpha" in version, "beta" in version
    if alpha and beta:
        return False
    if not alpha and not beta:
        return _positive(version)
    major_patch, minor = version.split("alpha" if alpha else "beta", 1)
    if minor and not _positive(minor):
        return False
    if "p" in major_patch:
        major, patch = major_patch.split("p", 1)
        return _positive(major) and _positive(patch)
    return _positive(major_patch)


# ---------------------------------------------------------------- descriptor walking

def walk_messages(fd: FileProto, with_map_entries: bool = False) -> Iterator[tuple]:
    """Yields (message, path) for every message, nested ones included, depth first."""
    def walk(messages, prefix: Path) -> Iterator[tuple]:
        for i, msg in enumerate(messages):
            if msg.options.map_entry and not with_map_entries:
                continue
            path = prefix + (i,)
            yield msg, path
            yield from walk(msg.nested_type, path + (MSG_NESTED,))
    yield from walk(fd.message_type, (FILE_MESSAGE,))


def walk_enums(fd: FileProto) -> Iterator[tuple]:
    for i, enum in enumerate(fd.enum_type):
        yield enum, (FILE_ENUM, i)
    for msg, path in walk_messages(fd):
        for i, enum in enumerate(msg.enum_type):
            yield enum, path + (MSG_ENUM, i)


def walk_fields(fd: FileProto, with_map_entries: bool = False) -> Iterator[tuple]:
    """Yields (field, path) for message fields and extensions (file- and message-level)."""
    for i, ext in enumerate(fd.extension):
        yield ext, (FILE_EXTENSION, i)
    for msg, path in walk_messages(fd, with_map_entries):
        for i, field in enumerate(msg.field):
            yield field, path + (MSG_FIELD, i)
        for i, ext in enumerate(msg.extension):
            yield ext, path + (MSG_EXTENSION, i)


def is_synthetic_oneof(msg: descriptor_pb2.DescriptorProto, index: int) -> bool:
    """The hidden oneof protoc makes for a proto3 `optional` field."""
    fields = [f for f in msg.field if f.HasField("oneof_index") and f.oneof_index == index]
    return len(fields) == 1 and fields[0].proto3_optional


def all_options(fd: FileProto) -> Iterator:
    """Every options message set anywhere in the file."""
    holders: list = [fd]
    for msg, _ in walk_messages(fd):
        holders += [msg, *msg.oneof_decl]
    holders += [f for f, _ in walk_fields(fd)]
    for enum, _ in walk_enums(fd):
        holders += [enum, *enum.value]
    for svc in fd.service:
        holders += [svc, *svc.method]
    return (h.options for h in holders if h.HasField("options"))


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def field_numbers(data: bytes) -> set[int]:
    """Top-level field numbers present in a serialized message (custom options are unknown
    fields to python, so this is how their use is detected)."""
    numbers, i = set(), 0
    while i < len(data):
        key, i = _varint(data, i)
        numbers.add(key >> 3)
        wire_type = key & 7
        if wire_type == 0:
            _, i = _varint(data, i)
        elif wire_type == 1:
            i += 8
        elif wire_type == 2:
            length, i = _varint(data, i)
            i += length
        elif wire_type == 5:
            i += 4
    return numbers


def defined_symbols(fd: FileProto) -> set[str]:
    """Fully-qualified types a file defines, plus "ext:<extendee>:<number>" for its extensions."""
    prefix = "." + fd.package if fd.package else ""
    symbols: set[str] = set()

    def add_message(msg, scope: str) -> None:
        name = f"{scope}.{msg.name}"
        symbols.add(name)
        symbols.update(f"{name}.{e.name}" for e in msg.enum_type)
        symbols.update(f"ext:{x.extendee}:{x.number}" for x in msg.extension)
        for nested in msg.nested_type:
            add_message(nested, name)

    for msg in fd.message_type:
        add_message(msg, prefix)
    symbols.update(f"{prefix}.{e.name}" for e in fd.enum_type)
    symbols.update(f"ext:{x.extendee}:{x.number}" for x in fd.extension)
    return symbols


def used_symbols(fd: FileProto) -> set[str]:
    """Types and custom options a file refers to, in the form defined_symbols uses."""
    used: set[str] = set()
    for field, _ in walk_fields(fd, with_map_entries=True):
        used.update(n for n in (field.type_name, field.extendee) if n)
    for svc in fd.service:
        for method in svc.method:
            used.update((method.input_type, method.output_type))
    for options in all_options(fd):
        extendee = "." + options.DESCRIPTOR.full_name
        used.update(f"ext:{extendee}:{n}" for n in field_numbers(options.SerializeToString()))
    return used


# ---------------------------------------------------------------- the linter

class Linter:
    """Collects violations of the files to lint; all_files also holds their imports."""

    def __init__(self, all_files: Sequence[FileProto], targets: Sequence[str],
                 display: dict[str, str] | None = None) -> None:
        self.by_name = {fd.name: fd for fd in all_files}
        self.files = [self.by_name[name] for name in targets]
        self.display = display or {}
        self.locations: dict[str, dict[Path, descriptor_pb2.SourceCodeInfo.Location]] = {}
        for fd in self.files:
            locs: dict = {}
            for loc in fd.source_code_info.location:
                locs.setdefault(tuple(loc.path), loc)
            self.locations[fd.name] = locs
        self.violations: list[Violation] = []

    def add(self, fd: FileProto, rule: str, paths: Sequence[Path], message: str) -> None:
        """Reports at the first of paths that has a source location, else at 1:1."""
        line, col = 1, 1
        for path in paths:
            loc = self.locations[fd.name].get(tuple(path))
            if loc is not None:
                line, col = loc.span[0] + 1, loc.span[1] + 1
                break
        self.violations.append(
            Violation(self.display.get(fd.name, fd.name), line, col, rule, message))

    def run(self) -> list[Violation]:
        for fd in self.files:
            self.check_file(fd)
            self.check_imports(fd)
            self.check_enums(fd)
            self.check_messages(fd)
            self.check_services(fd)
        self.check_directories_and_packages()
        self.check_request_response_unique()
        return sorted(set(self.violations))

    # -- file level
    def check_file(self, fd: FileProto) -> None:
        pkg, at_pkg = fd.package, [(FILE_PACKAGE,)]
        base = posixpath.basename(fd.name)
        stem, ext = posixpath.splitext(base)
        if stem != to_lower_snake(stem):
            self.add(fd, "FILE_LOWER_SNAKE_CASE", [],
                     f'Filename "{base}" should be lower_snake_case{ext}, '
                     f'such as "{to_lower_snake(stem)}{ext}".')
        if not fd.syntax and (FILE_SYNTAX,) not in self.locations[fd.name]:
            self.add(fd, "SYNTAX_SPECIFIED", [], "Files must have a syntax explicitly specified. "
                     'If no syntax is specified, the file defaults to "proto2".')
        if not pkg:
            self.add(fd, "PACKAGE_DEFINED", [], "Files must have a package defined.")
            return
        directory, expected_dir = posixpath.dirname(fd.name), pkg.replace(".", "/")
        if directory != expected_dir:
            self.add(fd, "PACKAGE_DIRECTORY_MATCH", at_pkg,
                     f'Files with package "{pkg}" must be within a directory "{expected_dir}" '
                     f'relative to root but were in directory "{directory or "."}".')
        expected_pkg = ".".join(to_lower_snake(part) for part in pkg.split("."))
        if pkg != expected_pkg:
            self.add(fd, "PACKAGE_LOWER_SNAKE_CASE", at_pkg,
                     f'Package name "{pkg}" should be lower_snake.case, such as "{expected_pkg}".')
        if not valid_version_suffix(pkg):
            self.add(fd, "PACKAGE_VERSION_SUFFIX", at_pkg,
                     f'Package name "{pkg}" should be suffixed with a correctly formed version, '
                     f'such as "{pkg}.v1".')

    def provided_symbols(self, name: str, seen: set[str] | None = None) -> set[str]:
        """What importing `name` brings in: its own symbols and those it imports publicly."""
        seen = seen if seen is not None else set()
        fd = self.by_name.get(name)
        if fd is None or name in seen:
            return set()
        seen.add(name)
        symbols = defined_symbols(fd)
        for index in fd.public_dependency:
            symbols |= self.provided_symbols(fd.dependency[index], seen)
        return symbols

    def check_imports(self, fd: FileProto) -> None:
        used = used_symbols(fd)
        for i, dep in enumerate(fd.dependency):
            at = [(FILE_DEPENDENCY, i)]
            if i in fd.public_dependency:
                self.add(fd, "IMPORT_NO_PUBLIC", at, f'Import "{dep}" must not be public.')
            if i in fd.weak_dependency:
                self.add(fd, "IMPORT_NO_WEAK", at, f'Import "{dep}" must not be weak.')
            public_or_used = i in fd.public_dependency or self.provided_symbols(dep) & used
            if dep in self.by_name and not public_or_used:  # public imports count as used
                self.add(fd, "IMPORT_USED", at, f'Import "{dep}" is unused.')

    # -- enums
    def check_enums(self, fd: FileProto) -> None:
        for enum, path in walk_enums(fd):
            at_name = [path + (NAME,), path]
            self.check_comment(fd, "COMMENT_ENUM", "Enum", enum.name, path)
            if enum.name != to_pascal(enum.name):
                self.add(fd, "ENUM_PASCAL_CASE", at_name, f'Enum name "{enum.name}" should be '
                         f'PascalCase, such as "{to_pascal(enum.name)}".')
            if enum.options.allow_alias:
                self.add(fd, "ENUM_NO_ALLOW_ALIAS", [path + (ENUM_OPTIONS, ALLOW_ALIAS), path],
                         f'Enum option "allow_alias" on enum "{enum.name}" must be false.')
            if enum.value and enum.value[0].number != 0:
                first = path + (ENUM_VALUE, 0)
                self.add(fd, "ENUM_FIRST_VALUE_ZERO", [first + (VALUE_NUMBER,), first],
                         f'First enum value "{enum.value[0].name}" should have a numeric value of 0')
            prefix = to_upper_snake(enum.name) + "_"
            for i, value in enumerate(enum.value):
                self.check_enum_value(fd, value, path + (ENUM_VALUE, i), prefix)

    def check_enum_value(self, fd: FileProto, value, path: Path, prefix: str) -> None:
        name, at_name = value.name, [path + (NAME,), path]
        self.check_comment(fd, "COMMENT_ENUM_VALUE", "Enum value", name, path)
        if name != to_upper_snake(name):
            self.add(fd, "ENUM_VALUE_UPPER_SNAKE_CASE", at_name, f'Enum value name "{name}" '
                     f'should be UPPER_SNAKE_CASE, such as "{to_upper_snake(name)}".')
        if not name.startswith(prefix):
            self.add(fd, "ENUM_VALUE_PREFIX", at_name,
                     f'Enum value name "{name}" should be prefixed with "{prefix}".')
        if value.number == 0 and not name.endswith("_UNSPECIFIED"):
            self.add(fd, "ENUM_ZERO_VALUE_SUFFIX", at_name,
                     f'Enum zero value name "{name}" should be suffixed with "_UNSPECIFIED".')

    # -- messages, fields, oneofs
    def check_messages(self, fd: FileProto) -> None:
        for msg, path in walk_messages(fd):
            self.check_comment(fd, "COMMENT_MESSAGE", "Message", msg.name, path)
            if msg.name != to_pascal(msg.name):
                self.add(fd, "MESSAGE_PASCAL_CASE", [path + (NAME,), path],
                         f'Message name "{msg.name}" should be PascalCase, '
                         f'such as "{to_pascal(msg.name)}".')
            for i, oneof in enumerate(msg.oneof_decl):
                if is_synthetic_oneof(msg, i):
                    continue
                oneof_path = path + (MSG_ONEOF, i)
                self.check_comment(fd, "COMMENT_ONEOF", "Oneof", oneof.name, oneof_path)
                if oneof.name != to_lower_snake(oneof.name):
                    self.add(fd, "ONEOF_LOWER_SNAKE_CASE", [oneof_path + (NAME,), oneof_path],
                             f'Oneof name "{oneof.name}" should be lower_snake_case, '
                             f'such as "{to_lower_snake(oneof.name)}".')
        for field, path in walk_fields(fd):
            self.check_field(fd, field, path)

    def check_field(self, fd: FileProto, field, path: Path) -> None:
        name, at_name = field.name, [path + (NAME,), path]
        self.check_comment(fd, "COMMENT_FIELD", "Field", name, path)
        if name != to_lower_snake(name):
            self.add(fd, "FIELD_LOWER_SNAKE_CASE", at_name, f'Field name "{name}" should be '
                     f'lower_snake_case, such as "{to_lower_snake(name)}".')
        if name.strip("_").lower() == "descriptor":
            self.add(fd, "FIELD_NO_DESCRIPTOR", at_name, f'Field name "{name}" cannot be any '
                     'capitalization of "descriptor" with any number of prefix or suffix '
                     'underscores.')

    # -- services and RPCs
    def check_services(self, fd: FileProto) -> None:
        for s, svc in enumerate(fd.service):
            path = (FILE_SERVICE, s)
            self.check_comment(fd, "COMMENT_SERVICE", "Service", svc.name, path)
            if svc.name != to_pascal(svc.name):
                self.add(fd, "SERVICE_PASCAL_CASE", [path + (NAME,), path],
                         f'Service name "{svc.name}" should be PascalCase, '
                         f'such as "{to_pascal(svc.name)}".')
            if not svc.name.endswith("Service"):
                self.add(fd, "SERVICE_SUFFIX", [path + (NAME,), path],
                         f'Service name "{svc.name}" should be suffixed with "Service".')
            for m, method in enumerate(svc.method):
                self.check_method(fd, svc.name, method, path + (SVC_METHOD, m))

    def check_method(self, fd: FileProto, service: str, method, path: Path) -> None:
        self.check_comment(fd, "COMMENT_RPC", "RPC", method.name, path)
        if method.name != to_pascal(method.name):
            self.add(fd, "RPC_PASCAL_CASE", [path + (NAME,), path], f'RPC name "{method.name}" '
                     f'should be PascalCase, such as "{to_pascal(method.name)}".')
        for rule, kind, type_name, field in (
                ("RPC_REQUEST_STANDARD_NAME", "Request", method.input_type, METHOD_INPUT),
                ("RPC_RESPONSE_STANDARD_NAME", "Response", method.output_type, METHOD_OUTPUT)):
            simple = type_name.rsplit(".", 1)[-1]
            short = to_pascal(method.name) + kind
            long = to_pascal(service) + short
            if simple not in (short, long):
                self.add(fd, rule, [path + (field,), path], f'RPC {kind.lower()} type '
                         f'"{simple}" should be named "{short}" or "{long}".')

    def check_request_response_unique(self) -> None:
        users: dict[str, set[tuple]] = defaultdict(set)
        for fd in self.files:
            for s, svc in enumerate(fd.service):
                for m, method in enumerate(svc.method):
                    path = (FILE_SERVICE, s, SVC_METHOD, m)
                    if method.input_type == method.output_type:
                        self.add(fd, "RPC_REQUEST_RESPONSE_UNIQUE", [path],
                                 f'RPC "{method.name}" has the same type '
                                 f'"{method.input_type.lstrip(".")}" for the request and response.')
                    for type_name in (method.input_type, method.output_type):
                        users[type_name].add((fd.name, path, method.name))
        for type_name, methods in users.items():
            if len(methods) > 1:
                for file_name, path, _ in methods:
                    self.add(self.by_name[file_name], "RPC_REQUEST_RESPONSE_UNIQUE", [path],
                             f'"{type_name.lstrip(".")}" is used as the request or response '
                             'type for multiple RPCs.')

    # -- cross-file package rules
    def check_directories_and_packages(self) -> None:
        by_dir: dict[str, list[FileProto]] = defaultdict(list)
        by_pkg: dict[str, list[FileProto]] = defaultdict(list)
        for fd in self.files:
            by_dir[posixpath.dirname(fd.name)].append(fd)
            if fd.package:
                by_pkg[fd.package].append(fd)
        for directory, files in by_dir.items():
            packages = sorted({fd.package or "(no package)" for fd in files})
            if len(packages) > 1:
                for fd in files:
                    self.add(fd, "DIRECTORY_SAME_PACKAGE", [(FILE_PACKAGE,)],
                             f'Multiple packages "{",".join(packages)}" detected within '
                             f'directory "{directory or "."}".')
        for pkg, files in by_pkg.items():
            directories = sorted({posixpath.dirname(fd.name) or "." for fd in files})
            if len(directories) > 1:
                for fd in files:
                    self.add(fd, "PACKAGE_SAME_DIRECTORY", [(FILE_PACKAGE,)],
                             f'Multiple directories "{",".join(directories)}" contain files '
                             f'with package "{pkg}".')
            for rule, (option, number) in SAME_OPTION_RULES.items():
                self.check_same_option(pkg, files, rule, option, number)

    def check_same_option(self, pkg: str, files: list[FileProto], rule: str, option: str,
                          number: int) -> None:
        def value(fd: FileProto) -> str:
            raw = getattr(fd.options, option)
            return str(raw).lower() if isinstance(raw, bool) else raw
        values = {value(fd) for fd in files}
        if len(values) < 2:
            return
        shown = ",".join(sorted(v for v in values if v))
        detail = (f'both values "{shown}" and no value' if "" in values
                  else f'multiple values "{shown}"')
        for fd in files:
            self.add(fd, rule, [(FILE_OPTIONS, number), (FILE_PACKAGE,)],
                     f'Files in package "{pkg}" have {detail} for option "{option}" '
                     'and all values must be equal.')

    # -- comments
    def check_comment(self, fd: FileProto, rule: str, kind: str, name: str, path: Path) -> None:
        loc = self.locations[fd.name].get(path)
        if loc is None:  # no source info (e.g. a descriptor set built without it)
            return
        if not loc.leading_comments.strip():
            self.add(fd, rule, [path],
                     f'{kind} "{name}" should have a non-empty comment for documentation.')


# ---------------------------------------------------------------- command line

def run_protoc(protoc: str, proto_paths: Sequence[str], names: Sequence[str]) -> list[FileProto]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "descriptor_set.pb")
        cmd = [protoc, *(f"--proto_path={p}" for p in proto_paths), "--include_imports",
               "--include_source_info", f"--descriptor_set_out={out}", *names]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise UsageError(f"cannot run protoc: {e}") from e
        if result.returncode != 0:
            raise UsageError(f"protoc failed:\n{result.stderr.strip()}")
        return read_descriptor_set(out)


def read_descriptor_set(path: str) -> list[FileProto]:
    fds = descriptor_pb2.FileDescriptorSet()
    try:
        with open(path, "rb") as f:
            fds.ParseFromString(f.read())
    except Exception as e:  # OSError, or DecodeError (no stable import path across versions)
        raise UsageError(f"cannot read descriptor set {path}: {e}") from e
    return list(fds.file)


def proto_name(arg: str, proto_paths: Sequence[str]) -> str:
    """Name of a file argument relative to its proto path ("proto/a/v1/x.proto" -> "a/v1/x.proto"
    with -I proto); arguments already relative to a proto path are kept."""
    for root in proto_paths:
        if not os.path.isabs(arg) and os.path.isfile(os.path.join(root, arg)):
            return arg.replace(os.sep, "/")
    for root in proto_paths:
        rel = os.path.relpath(os.path.abspath(arg), os.path.abspath(root))
        if os.path.isfile(arg) and not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    raise UsageError(f"{arg}: not found in any --proto_path ({', '.join(proto_paths)})")


def lint(all_files: Sequence[FileProto], targets: Sequence[str],
         display: dict[str, str] | None = None) -> list[Violation]:
    names = {fd.name for fd in all_files}
    missing = [t for t in targets if t not in names]
    if missing:
        raise UsageError(f"not in the descriptor set: {', '.join(missing)}")
    return Linter(all_files, targets, display).run()


def lint_protos(proto_paths: Sequence[str], files: Sequence[str],
                protoc: str = "protoc") -> list[Violation]:
    """Compiles files with protoc and lints them; paths are reported as given."""
    names = [proto_name(f, proto_paths) for f in files]
    display = dict(zip(names, files))
    return lint(run_protoc(protoc, proto_paths, names), names, display)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--proto_path", "-I", action="append", default=[],
                        help="import root (repeatable); the files are compiled with protoc")
    parser.add_argument("--protoc", default="protoc", help="protoc binary (default: protoc)")
    parser.add_argument("--descriptor_set", help="lint an existing FileDescriptorSet instead")
    parser.add_argument("--files", nargs="+", default=[],
                        help="with --descriptor_set: names (as in the set) of the files to lint")
    parser.add_argument("protos", nargs="*", help="the .proto files to lint")
    args = parser.parse_args(argv)
    try:
        if args.descriptor_set:
            targets = [*args.files, *args.protos]
            if not targets or args.proto_path:
                parser.error("--descriptor_set needs --files and takes no --proto_path")
            violations = lint(read_descriptor_set(args.descriptor_set), targets)
        else:
            targets = args.protos
            if not targets or not args.proto_path or args.files:
                parser.error("give --proto_path DIR and FILE.proto... (or --descriptor_set)")
            violations = lint_protos(args.proto_path, targets, args.protoc)
    except UsageError as e:
        print(f"lint_proto: {e}", file=sys.stderr)
        return 2
    for violation in violations:
        print(violation)
    print(f"lint_proto: {len(violations)} violation(s) in {len(targets)} file(s) checked")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
