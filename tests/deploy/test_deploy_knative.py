"""Checks of deploy/knative: the Knative Service manifest (serving.knative.dev/v1, scale-to-zero
annotations on the revision template), the example app it runs (started for real: /warmup,
/healthz, a task, the cold flag), its Dockerfile, and its registration with prewarmd
(prewarm-services.json through prewarmctl against a real prewarmd; the k8s ConfigMap registers the
same service)."""

from __future__ import annotations

import ast
import http.client
import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import deploy_helpers as h

APP = h.KNATIVE / "app" / "main.py"


@pytest.fixture(scope="module")
def ksvc() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((h.KNATIVE / "service.yaml").read_text()) if d]
    return doc


def test_knative_service_manifest(ksvc: dict) -> None:
    assert ksvc["apiVersion"] == "serving.knative.dev/v1"
    assert ksvc["kind"] == "Service"
    assert re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", ksvc["metadata"]["name"])
    template = ksvc["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["image"]
    # Knative routes to one port, named http1 (HTTP/1) or h2c.
    (port,) = container["ports"]
    assert port["name"] in ("http1", "h2c")
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False


def test_autoscaling_annotations_on_the_revision_template(ksvc: dict) -> None:
    """On spec.template.metadata (the revision), not on the Service's own metadata, where Knative
    ignores them; values are strings, as Kubernetes requires of annotations."""
    assert not any(k.startswith("autoscaling.knative.dev/")
                   for k in ksvc["metadata"].get("annotations", {}))
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    for key, value in annotations.items():
        assert isinstance(value, str), f"{key}: {value!r} must be a string"
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert re.fullmatch(r"[0-9]+s", annotations["autoscaling.knative.dev/window"])
    assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1


def test_registration_matches_the_service_and_the_configmap(ksvc: dict) -> None:
    """The warm-up goes to the service's cluster-local address, with a keep-alive no longer than
    its stable window; the k8s ConfigMap registers the same service."""
    (service,) = json.loads((h.KNATIVE / "prewarm-services.json").read_text())["services"]
    name, namespace = ksvc["metadata"]["name"], ksvc["metadata"]["namespace"]
    assert service["name"] == name
    assert service["warmup_url"] == f"http://{name}.{namespace}.svc.cluster.local/warmup"
    window = ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/window"]
    assert int(service["keep_alive"].rstrip("s")) <= int(window.rstrip("s"))
    assert service in h.configmap_config()["services"]


def test_app_dockerfile_copies_what_exists() -> None:
    dockerfile = (h.KNATIVE / "app" / "Dockerfile").read_text()
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+", dockerfile, re.M):
        assert (h.KNATIVE / "app" / src).exists(), src
    assert re.search(r"^USER\s+[1-9][0-9]*", dockerfile, re.M), "must run as a non-root uid"
    assert re.search(r"^FROM\s+debian:12", dockerfile, re.M)


def test_app_image_has_every_module_the_app_imports() -> None:
    """Each module main.py imports comes from a Debian package that the app image's apt-get
    install brings (python3-minimal, say, has no http.server)."""
    apt_cache = h.require_tool("apt-cache")
    dockerfile = (h.KNATIVE / "app" / "Dockerfile").read_text()
    m = re.search(r"apt-get install -y --no-install-recommends ((?:[a-z0-9.+-]+ ?)+)", dockerfile)
    assert m, "no apt-get install in the app's Dockerfile"
    result = h.run([apt_cache, "depends", "--recurse", "--no-recommends", "--no-suggests",
                    "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                    *m.group(1).split()], timeout=120)
    closure = {line.strip() for line in result.stdout.splitlines() if not line.startswith(" ")}
    tree = ast.parse(APP.read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module and n.module != "__future__"}
    assert "http.server" in modules
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        if spec.origin in (None, "built-in", "frozen"):
            continue  # inside the interpreter itself
        owner = h.run(["dpkg", "-S", spec.origin], timeout=30)
        assert owner.returncode == 0, f"{module}: no package owns {spec.origin}"
        package = owner.stdout.split(":", 1)[0]
        assert package in closure, f"{module} comes from {package}, not in the app image"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[int]:
    """The example app on a free port, with a 0.3 s initialisation."""
    env = dict(os.environ, PORT="0", INIT_SECONDS="0.3", WORK_SECONDS="0.05",
               K_SERVICE="prewarm-example")
    process = subprocess.Popen([h.PYTHON, str(APP)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        m = re.search(r"listening on port (\d+)", line)
        assert m, f"no listening line: {line!r}"
        yield int(m.group(1))
    finally:
        process.terminate()
        try:
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_app_serves_a_cheap_warmup_and_reports_cold(app: int) -> None:
    status, headers, body = get(app, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["x-process-cold"] == "false"  # the probe does not consume the flag
    start = time.monotonic()
    status, headers, body = get(app, "/warmup")
    assert (status, body) == (200, b"warm\n")
    assert time.monotonic() - start < 0.2
    assert headers["x-process-cold"] == "true"  # the first real request: it met a cold process
    status, headers, body = get(app, "/task?sleep=0.1")
    assert status == 200 and headers["x-process-cold"] == "false"
    assert json.loads(body) == {"service": "prewarm-example", "slept": 0.1, "cold": False}
    status, _, _ = get(app, "/task?sleep=abc")
    assert status == 400


def test_app_reads_the_body_of_a_post_on_a_kept_alive_connection(app: int) -> None:
    """queue-proxy keeps connections to the app open: a POST with a body, then a GET, on one
    HTTP/1.1 connection, must both be answered 200 (an unread body would be parsed as the next
    request, a 400)."""
    conn = http.client.HTTPConnection("127.0.0.1", app, timeout=10)
    try:
        conn.request("POST", "/task?sleep=0", body=b'{"run_id": "r1", "payload": "' +
                     b"x" * 5000 + b'"}', headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert json.loads(resp.read())["slept"] == 0
        assert not resp.will_close
        sock = conn.sock
        conn.request("GET", "/warmup")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"warm\n")
        assert conn.sock is sock, "the second request used a new connection"
    finally:
        conn.close()


def exchange(port: int, data: bytes) -> bytes:
    """Sends raw bytes on one connection, returns everything the app answers until it closes or
    goes quiet."""
    import socket  # noqa: PLC0415
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def statuses(raw: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"^HTTP/1\.1 (\d{3}) ", raw, re.M)]


def test_app_reads_chunked_bodies_and_pipelined_requests(app: int) -> None:
    """A chunked POST (with an extension and a trailer) and a GET sent at once on one connection:
    two 200s."""
    raw = exchange(app, b"POST /warmup HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
                        b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [200, 200], raw
    assert raw.endswith(b"ok\n"), raw


@pytest.mark.parametrize("request_bytes,status", [
    (b"POST /warmup HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /warmup HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     400),
    (b"POST /warmup HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     501),
    (b"POST /warmup HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /warmup HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
], ids=["bad-length", "two-lengths", "gzip", "bad-chunk", "too-large"])
def test_app_refuses_an_unreadable_body_and_closes(app: int, request_bytes: bytes,
                                                   status: int) -> None:
    """The error is answered, the connection closed: the GET behind it is never parsed from the
    body's bytes."""
    raw = exchange(app, request_bytes + b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert statuses(raw) == [status], raw
    assert b"\r\nConnection: close\r\n" in raw


def test_revision_timeout_covers_the_longest_task(ksvc: dict) -> None:
    """The app accepts tasks up to MAX_SLEEP_SECONDS: the revision's timeouts must leave room for
    them and a cold start, within Knative's default max-revision-timeout-seconds (600)."""
    tree = ast.parse(APP.read_text())
    (max_sleep,) = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "MAX_SLEEP_SECONDS" for t in n.targets)]
    spec = ksvc["spec"]["template"]["spec"]
    assert max_sleep + 60 <= spec["timeoutSeconds"] <= 600
    assert spec["responseStartTimeoutSeconds"] == spec["timeoutSeconds"]


def test_prewarmctl_registers_the_services_file_with_prewarmd(tmp_path: Path) -> None:
    """What docs/deploy.md says to run: prewarmctl services register --file - < the JSON."""
    h.harness.require_build_products()
    prewarmctl = h.require_prewarmctl()
    services_file = h.KNATIVE / "prewarm-services.json"
    (expected,) = json.loads(services_file.read_text())["services"]
    with h.harness.Prewarmd(tmp_path / "prewarmd") as server:
        result = subprocess.run(
            [str(prewarmctl), "--server", server.address, "services", "register", "--file", "-"],
            stdin=services_file.open(), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        (service,) = server.client().ListServices(h.harness.pb2.ListServicesRequest()).services
        assert service.name == expected["name"]
        assert service.warmup_url == expected["warmup_url"]
        assert service.keep_alive.seconds == int(expected["keep_alive"].rstrip("s"))
        assert service.mode == h.harness.pb2.WARMUP_MODE_MANAGED
        # A URL outside the allowlist is refused.
        bad = subprocess.run(
            [str(prewarmctl), "--server", server.address, "services", "register",
             "--name", "x", "--url", "http://example.com/warmup"],
            capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0
        assert "allowlist" in bad.stderr
