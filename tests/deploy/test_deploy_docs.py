"""docs/deploy.md against the real server and tools: every flag it names is a real flag (of
prewarmd, read from server/main.cc; of prewarmctl, from its own --help; or of the few other tools
it shows), every metric it names is in server/metrics.cc, every prewarmd flag and config field is
documented, and every file it points to exists."""

from __future__ import annotations

import re

import deploy_helpers as h

# Flags of other programs the guide shows (docker run, kubectl, the local gateway).
OTHER_TOOLS_FLAGS = {"health-cmd", "add-host", "previous", "from-file", "cert", "key", "host"}
# Words shaped like metric names that are not metrics (build targets).
NOT_METRICS = {"prewarm_python_stubs"}


def doc() -> str:
    return h.DEPLOY_DOC.read_text()


def prewarmctl_flags() -> set[str]:
    prewarmctl = h.require_prewarmctl()
    flags: set[str] = set()
    for args in (["--help"], ["services", "register", "--help"], ["health", "--help"],
                 ["services", "list", "--help"], ["plan", "--help"], ["stats", "--help"]):
        result = h.run([str(prewarmctl), *args], timeout=30)
        flags |= set(re.findall(r"--([a-z][a-z-]*)", result.stdout + result.stderr))
    assert {"server", "timeout", "tls"} <= flags, flags
    return flags


def test_every_flag_is_real() -> None:
    h.harness.require_build_products()
    known = h.prewarmd_flags() | prewarmctl_flags() | OTHER_TOOLS_FLAGS
    named = set(re.findall(r"(?<![\w-])--([a-z][a-z_-]*)", doc()))
    assert named - known == set(), f"docs/deploy.md names flags that do not exist: " \
                                   f"{sorted(named - known)}"


def test_every_prewarmd_flag_and_config_field_is_documented() -> None:
    text = doc()
    for flag in h.prewarmd_flags():
        assert f"`--{flag}`" in text or f"--{flag}=" in text, f"--{flag} is not documented"
    proto = (h.REPO / "proto" / "prewarm" / "config" / "v1" / "config.proto").read_text()
    fields = re.findall(r"^\s+(?:repeated\s+)?[\w.]+\s+(\w+)\s*=\s*\d+;", proto, re.M)
    assert fields
    for name in fields:
        assert f"`{name}`" in text or f'"{name}"' in text, f"config field {name} not documented"


def test_every_metric_is_real() -> None:
    series = h.contract_series()
    named = set(re.findall(r"\b((?:prewarm|process)_[a-z_]+)\b", doc()))
    # Histograms are named by their family in prose.
    families = set(h.metric_contract())
    unknown = {n for n in named - NOT_METRICS if n not in series and n not in families}
    assert unknown == set(), f"docs/deploy.md names metrics prewarmd does not have: {unknown}"


def test_ports_are_prewarmds() -> None:
    defaults = h.default_addresses()
    text = doc()
    grpc, metrics = h.port_of(defaults["grpc_address"]), h.port_of(defaults["metrics_address"])
    assert str(grpc) in text and str(metrics) in text
    for port in set(re.findall(r"\b(\d{4,5})\b", text)):
        if port.startswith(("50", "94")):
            assert int(port) in (grpc, metrics), f"port {port} is not one of prewarmd's"


def test_paths_exist() -> None:
    for path in set(re.findall(r"`((?:deploy|docs|scripts|server|proto|tests)/[\w./-]+)`", doc())):
        assert (h.REPO / path).exists(), f"docs/deploy.md points to {path}, which does not exist"
