"""Checks of deploy/docker. There is no Docker engine here, so the image is not built by default
(test_docker_build runs only where `docker info` works). What is checked instead, each part of
the Dockerfile against the real thing:

- the build stage: its COPY sources exist and survive Dockerfile.dockerignore, and CMake configures
  prewarmd from exactly that context with the stage's own cmake command;
- the runtime stage: every apt package exists, and together with their dependencies they provide
  every shared library that prewarmd and prewarmctl load (ldd on the real binaries);
- user, volume, ports, entrypoint and CMD agree with prewarmd's flags and defaults, and prewarmd
  starts with the CMD's arguments;
- the HEALTHCHECK's command (prewarmctl health, the gRPC health service) succeeds against a real
  prewarmd started with the CMD's arguments, and fails on a closed port.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

import deploy_helpers as h

IGNORE_FILE = h.DOCKERFILE.with_name("Dockerfile.dockerignore")


# --------------------------------------------------------------------------------------------
# A Dockerfile reader: instructions with their stage.


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def json_args(self) -> Optional[list[str]]:
        """The exec form ["a", "b"] as a list, None for the shell form."""
        import json  # noqa: PLC0415
        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return None

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """--name=value options, then the remaining words (COPY, HEALTHCHECK)."""
        words = shlex.split(self.args)
        flags = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name}: no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    logical = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not logical:
            start = number
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not logical):
            continue  # comments, also inside continued instructions, as Docker does
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert m, f"line {start}: FROM {args}"
            stages.append(Stage(m.group(1), m.group(2) or str(len(stages))))
        else:
            assert stages, f"line {start}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args.strip(), start))
        logical = ""
    return stages


# --------------------------------------------------------------------------------------------
# .dockerignore matching, as Docker's patternmatcher does it: `*` and `?` within a path element,
# `**` across elements, a pattern excluding a directory excludes its contents, `!` re-includes,
# the last matching pattern wins.


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif c == "*":
            out += "[^/]*"
            i += 1
        elif c == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(c)
            i += 1
    return re.compile(f"^{out}$")


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((include, _pattern_regex(pattern)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for include, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not include
    return excluded


# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(h.DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def build(stages: list[Stage]) -> Stage:
    return stages[0]


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def rules() -> list[tuple[bool, re.Pattern[str]]]:
    return ignore_rules(IGNORE_FILE.read_text())


def cmd_args(runtime: Stage) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in runtime.last("CMD").json_args())


def apt_packages(stage: Stage) -> list[str]:
    packages: list[str] = []
    for run in stage.all("RUN"):
        for m in re.finditer(r"apt-get install ((?:\s*-\S+)*)((?:\s+[a-z0-9][a-z0-9.+-]+)+)",
                             run.args):
            packages += m.group(2).split()
    return packages


def test_multi_stage_on_debian_12(stages: list[Stage], build: Stage, runtime: Stage) -> None:
    assert len(stages) == 2
    assert build.image == "debian:12" and build.name == "build"
    assert runtime.image in ("debian:12", "debian:12-slim")
    # The build stage installs its toolchain with the project's own script.
    assert any("scripts/install-deps.sh" in r.args for r in build.all("RUN"))


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = ignore_rules("*\n!src\n**/*.db\n!keep.db\n")
    assert ignored("README.md", rules)
    assert not ignored("src/a/b.cc", rules)
    assert ignored("src/a/store.db", rules)
    assert not ignored("keep.db", rules)


def test_copy_sources_exist_and_are_in_the_context(stages: list[Stage], rules: list) -> None:
    names = set()
    for stage in stages:
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            sources = words[:-1]
            if "from" in flags:
                assert flags["from"] in names, f"line {copy.line}: no earlier stage {flags['from']}"
                continue
            for src in sources:
                path = h.REPO / src
                assert path.exists(), f"line {copy.line}: {src} does not exist"
                assert not ignored(src, rules), f"line {copy.line}: {src} is dockerignored"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                kept = [p for p in files if not ignored(str(p.relative_to(h.REPO)), rules)]
                assert kept, f"line {copy.line}: every file of {src} is dockerignored"
        names.add(stage.name)


def test_copies_from_the_build_stage_are_what_it_builds(build: Stage, runtime: Stage) -> None:
    workdir = build.last("WORKDIR").args
    built = " ".join(r.args for r in build.all("RUN"))
    copies = [c.flags_and_words()[1] for c in runtime.all("COPY")
              if c.flags_and_words()[0].get("from") == build.name]
    assert len(copies) == 2
    for src, _ in copies:
        assert src.startswith(workdir + "/"), src
        assert src[len(workdir) + 1:] in built, f"{src} is not produced by the build stage"


def materialise_context(copies: list[Instruction], rules: list, dest: Path) -> None:
    for copy in copies:
        _, words = copy.flags_and_words()
        *sources, target = words
        for src in sources:
            path = h.REPO / src
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            for file in files:
                rel = str(file.relative_to(h.REPO))
                if ignored(rel, rules):
                    continue
                inside = file.relative_to(path) if path.is_dir() else Path(path.name)
                out = dest / target / inside if (path.is_dir() or target.endswith("/")) \
                    else dest / target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)


def test_build_stage_configures_from_exactly_its_context(build: Stage, rules: list,
                                                         tmp_path: Path) -> None:
    """CMake configures prewarmd from only what the build stage copies (after the ignore file),
    with the stage's own cmake command: nothing the build needs is missing from the image."""
    cmake = h.require_tool("cmake")
    h.require_tool("ninja")
    context = tmp_path / "src"
    materialise_context([c for c in build.all("COPY") if "from" not in c.flags_and_words()[0]],
                        rules, context)
    run = next(r.args for r in build.all("RUN") if "cmake -S" in r.args)
    configure = shlex.split(run.split("&&")[0])
    assert configure[:3] == ["cmake", "-S", "."], configure
    result = h.run([cmake, *configure[1:]], cwd=context, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The targets the stage builds exist in that configuration.
    wanted = re.search(r"cmake --build build --target ((?:[\w-]+ ?)+)", run).group(1).split()
    assert "prewarmd" in wanted
    targets = h.run([cmake, "--build", "build", "--target", "help"], cwd=context, timeout=60)
    for target in wanted:
        assert re.search(rf"^{target}:", targets.stdout, re.M), f"no target {target}"


def test_runtime_packages_exist(runtime: Stage) -> None:
    apt_cache = h.require_tool("apt-cache")
    packages = apt_packages(runtime)
    assert packages
    result = h.run([apt_cache, "show", "--no-all-versions", *packages], timeout=120)
    shown = set(re.findall(r"^Package: (\S+)$", result.stdout, re.M))
    assert set(packages) - shown == set(), result.stderr


@pytest.fixture(scope="module")
def prewarmctl() -> Path:
    """The prewarmctl the image ships (and its HEALTHCHECK runs), from the build tree."""
    h.harness.require_build_products()
    return h.require_prewarmctl()


def shared_library_packages(binary: Path) -> set[str]:
    """The Debian packages of every shared library `binary` loads (ldd: the whole closure)."""
    result = h.run(["ldd", str(binary)], timeout=30)
    assert result.returncode == 0, result.stderr
    libraries = re.findall(r"(/\S+\.so[.\d]*)", result.stdout)
    assert libraries, result.stdout
    # dpkg knows a file by the path its package installed it at: with Debian 12's merged /usr,
    # /lib/x86_64-linux-gnu/libc.so.6 rather than the /usr/lib one the loader may report.
    candidates = {lib: list(dict.fromkeys([os.path.realpath(lib), lib,
                                           re.sub(r"^/usr", "", os.path.realpath(lib)),
                                           re.sub(r"^/usr", "", lib)]))
                  for lib in libraries}
    everything = sorted({c for cs in candidates.values() for c in cs})
    owners: dict[str, str] = {}
    found = h.run(["dpkg", "-S", *everything], timeout=60)  # exit 1 when some are unknown
    for line in found.stdout.splitlines():
        package, _, path = line.partition(": ")
        owners[path.strip()] = package.split(":")[0]
    packages = set()
    for lib, paths in candidates.items():
        owner = next((owners[p] for p in paths if p in owners), None)
        assert owner, f"{binary.name}: no package owns {lib}"
        packages.add(owner)
    return packages


def test_runtime_packages_provide_every_shared_library(runtime: Stage, prewarmctl: Path) -> None:
    h.harness.require_build_products()
    apt_cache = h.require_tool("apt-cache")
    packages = apt_packages(runtime)
    result = h.run([apt_cache, "depends", "--recurse", "--no-recommends", "--no-suggests",
                    "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                    *packages], timeout=120)
    assert result.returncode == 0, result.stderr
    closure = {line.strip() for line in result.stdout.splitlines() if not line.startswith(" ")}
    for binary in (h.harness.prewarmd_binary(), prewarmctl):
        missing = shared_library_packages(binary) - closure
        assert not missing, f"{binary.name} needs {sorted(missing)}, not in the runtime image"


def test_runtime_user_volume_ports_and_command(runtime: Stage) -> None:
    user = runtime.last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user
    # Nothing after USER switches back to root.
    assert runtime.instructions.index(runtime.last("USER")) > max(
        runtime.instructions.index(i) for i in runtime.all("RUN"))

    args = cmd_args(runtime)
    assert set(args) <= h.prewarmd_flags(), set(args) - h.prewarmd_flags()
    grpc_port, metrics_port = h.port_of(args["grpc_address"]), h.port_of(args["metrics_address"])
    # The image serves on prewarmd's default ports, on every interface.
    defaults = h.default_addresses()
    assert grpc_port == h.port_of(defaults["grpc_address"])
    assert metrics_port == h.port_of(defaults["metrics_address"])
    assert args["grpc_address"].startswith("0.0.0.0:")
    assert args["metrics_address"].startswith("0.0.0.0:")
    exposed = {int(p.split("/")[0]) for e in runtime.all("EXPOSE") for p in e.args.split()}
    assert exposed == {grpc_port, metrics_port}

    volumes = runtime.last("VOLUME").json_args()
    assert posixpath.dirname(args["store"]) in volumes

    copied = {c.flags_and_words()[1][-1] for c in runtime.all("COPY")}
    (entrypoint,) = runtime.last("ENTRYPOINT").json_args()
    assert entrypoint in copied and entrypoint.endswith("/prewarmd")
    # Every binary the build stage strips (what it built) is copied into the image.
    assert {posixpath.basename(p) for p in copied} == {"prewarmd", "prewarmctl"}


def test_healthcheck_asks_the_grpc_health_service(runtime: Stage) -> None:
    flags, words = runtime.last("HEALTHCHECK").flags_and_words()
    for option in ("interval", "timeout", "retries"):
        assert option in flags
    assert words[0] == "CMD"
    exec_form = runtime.last("HEALTHCHECK").args.split("CMD", 1)[1].strip()
    import json  # noqa: PLC0415
    argv = json.loads(exec_form)
    copied = {c.flags_and_words()[1][-1] for c in runtime.all("COPY")}
    assert argv[0] in copied
    server = argv[argv.index("--server") + 1]
    assert h.port_of(server) == h.port_of(cmd_args(runtime)["grpc_address"])
    assert argv[-1] == "health"


def healthcheck_argv(runtime: Stage, prewarmctl: Path, server: str) -> list[str]:
    """The HEALTHCHECK's command with the test's prewarmctl and server address."""
    import json  # noqa: PLC0415
    argv = json.loads(runtime.last("HEALTHCHECK").args.split("CMD", 1)[1].strip())
    argv[0] = str(prewarmctl)
    argv[argv.index("--server") + 1] = server
    return argv


def test_cmd_and_healthcheck_against_a_real_prewarmd(runtime: Stage, prewarmctl: Path,
                                                      tmp_path: Path) -> None:
    """prewarmd starts with the image's CMD (addresses and store overridden for the test: a flag
    given twice takes its last value), and the HEALTHCHECK's command says SERVING; against a
    closed port it fails."""
    cmd = runtime.last("CMD").json_args()
    overrides = ["--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                 f"--store={tmp_path / 'prewarm.db'}"]
    server = h.harness.Prewarmd(tmp_path / "prewarmd", args=[*cmd, *overrides])
    with server:
        ok = h.run(healthcheck_argv(runtime, prewarmctl, server.address), timeout=30)
        assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stdout + ok.stderr
    closed = h.run(healthcheck_argv(runtime, prewarmctl,
                                    f"127.0.0.1:{h.harness.closed_port()}"), timeout=30)
    assert closed.returncode != 0, closed.stdout


def test_docker_build() -> None:
    """Builds the image where a Docker engine is available (not on this project's machines)."""
    docker = h.require_tool("docker", optional=True)
    if subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no Docker engine reachable (docker info fails)")
    result = h.run([docker, "build", "-f", str(h.DOCKERFILE), "-t", "prewarmd:test",
                    str(h.REPO)], timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
