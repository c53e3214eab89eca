"""The Airflow provider, driven by fakes shaped exactly like Airflow 2.7 / 2.10 / 3.x (airflow_fakes):
provider and plugin registration, the hook and its connection, the listener through pluggy with each
version's specs and calls, the background reporter, and the listener with prewarmd down."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import sys
import threading
import time
import tomllib
import types
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Optional

import pluggy
import pytest

import support

support.need_stubs()

import airflow_fakes  # noqa: E402
from airflow_fakes import FakeAirflow, RecordingClient, TaskInstanceState  # noqa: E402
from flaky_server import FlakyService  # noqa: E402
from prewarm_client import (NotFoundError, PrewarmClient, UnavailableError,  # noqa: E402
                            convert, pb2)
from support import harness  # noqa: E402

ALL_VERSIONS = pytest.mark.parametrize("fake_airflow", airflow_fakes.VERSIONS, indirect=True)


@pytest.fixture(autouse=True)
def clean_provider() -> Iterator[None]:
    """Every test imports the provider afresh (with or without a fake Airflow) and leaves no
    reporter thread or listener behind."""
    airflow_fakes.uninstall()
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_") or
                k.startswith("AIRFLOW__PREWARM__")]:
        os.environ.pop(key)
    yield
    airflow_fakes.uninstall()


def provider() -> types.SimpleNamespace:
    """The provider's modules, imported now (against whatever Airflow is installed)."""
    names = ["_compat", "settings", "dags", "reporter", "hooks", "listener", "plugin", "operators"]
    mods = {n: importlib.import_module(f"prewarm_client.airflow.{n}") for n in names}
    mods["package"] = importlib.import_module("prewarm_client.airflow")
    return types.SimpleNamespace(**mods)


def settings_for(p: types.SimpleNamespace, **overrides: Any) -> Any:
    base = dict(target="127.0.0.1:1", timeout=1.0, flush_timeout=2.0, cancel_grace=0.0)
    base.update(overrides)
    return p.settings.PrewarmSettings(**base)


def use_recorder(p: types.SimpleNamespace, **overrides: Any) -> RecordingClient:
    recorder = RecordingClient()
    p.listener.set_listener(p.listener.PrewarmListener(
        conn_id=f"test-{uuid.uuid4().hex[:6]}", settings=settings_for(p, **overrides),
        client_factory=lambda s: recorder))
    return recorder


def seed_dag(extra: Optional[dict[str, Any]] = None) -> airflow_fakes.DAG:
    """The seed workflow: task1 -> task2 -> task3, each calling one service (params)."""
    return airflow_fakes.make_dag("seed", [
        ("task1", (), {"params": {"prewarm_service": "svc-a"}}),
        ("task2", ("task1",), {"params": {"prewarm_service": "svc-b"}}),
        ("task3", ("task2",), {"params": {"prewarm_service": "svc-c"}, **(extra or {})}),
    ])


# Provider and plugin registration -----------------------------------------------------------


def test_provider_info_has_what_airflow_reads() -> None:
    p = provider()
    info = p.package.get_provider_info()
    assert info["package-name"] == "prewarm-client"
    assert info["name"] and info["description"] and info["versions"]
    assert info["connection-types"] == [{"hook-class-name":
                                         "prewarm_client.airflow.hooks.PrewarmHook",
                                         "connection-type": "prewarm"}]
    assert info["plugins"] == [{"name": "prewarm",
                                "plugin-class": "prewarm_client.airflow.plugin.PrewarmPlugin"}]
    # provider_info.schema.json: every config option has these fields.
    for section in info["config"].values():
        assert set(section) == {"description", "options"}
        for option in section["options"].values():
            assert {"description", "version_added", "type", "example", "default"} <= set(option)
            assert option["type"] in ("string", "boolean", "integer", "float")
    # Every class named resolves.
    for dotted in ([c["hook-class-name"] for c in info["connection-types"]]
                   + [pl["plugin-class"] for pl in info["plugins"]]):
        module, _, name = dotted.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_entry_points_in_pyproject() -> None:
    data = tomllib.loads((support.PACKAGE_DIR / "pyproject.toml").read_text())
    eps = data["project"]["entry-points"]
    assert eps["apache_airflow_provider"]["provider_info"] == \
        "prewarm_client.airflow:get_provider_info"
    assert eps["airflow.plugins"]["prewarm"] == "prewarm_client.airflow.plugin:PrewarmPlugin"


def test_importable_without_airflow() -> None:
    assert "airflow" not in sys.modules
    p = provider()
    assert p._compat.AIRFLOW_VERSION is None
    assert p.hooks.PrewarmHook.__mro__[1] is p._compat._StandInBaseHook
    assert p.plugin.PrewarmPlugin.listeners == [p.listener]
    # The listener functions carry pluggy's "airflow" hookimpl marker all the same.
    assert hasattr(p.listener.on_task_instance_running, "airflow_impl")


@ALL_VERSIONS
def test_plugin_registers_and_validates_against_each_spec(fake_airflow: FakeAirflow) -> None:
    p = provider()
    assert issubclass(p.plugin.PrewarmPlugin, sys.modules["airflow.plugins_manager"].AirflowPlugin)
    pm = fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    assert pm.is_registered(p.listener)
    hooks = {impl.function.__name__ for caller in pm.hook.__dict__.values()
             if hasattr(caller, "get_hookimpls") for impl in caller.get_hookimpls()}
    expected = {"on_dag_run_running", "on_dag_run_success", "on_dag_run_failed",
                "on_task_instance_running", "on_task_instance_success",
                "on_task_instance_failed", "before_stopping"}
    assert expected <= hooks
    # Each implementation asks only for arguments the spec passes (pluggy checked this on
    # register); `session` / `error` have defaults and are never requested.
    for name in expected:
        for impl in getattr(pm.hook, name).get_hookimpls():
            assert "session" not in impl.argnames and "error" not in impl.argnames
    # Airflow 3 adds on_task_instance_skipped; on 2.x our implementation is simply never called.
    if fake_airflow.major >= 3:
        assert pm.hook.on_task_instance_skipped.get_hookimpls()


def test_dag_run_spec_with_session_also_validates() -> None:
    """Some 2.x releases passed `session` to the dag-run hooks too."""
    p = provider()
    spec = pluggy.HookspecMarker("airflow")

    @spec
    def on_dag_run_running(dag_run, msg, session): ...

    pm = pluggy.PluginManager("airflow")
    pm.add_hookspecs(types.SimpleNamespace(on_dag_run_running=on_dag_run_running))
    pm.register(p.listener)
    recorder = use_recorder(p)
    pm.hook.on_dag_run_running(dag_run=airflow_fakes.DagRun(seed_dag(), "r1"), msg="started",
                               session=airflow_fakes.Session())
    assert p.listener.get_listener().flush(5)
    assert recorder.of("prewarm")


# The hook and its connection ----------------------------------------------------------------


@pytest.mark.parametrize("fake_airflow", ["2.10", "3.1"], indirect=True)
def test_hook_subclasses_airflows_base_hook(fake_airflow: FakeAirflow) -> None:
    p = provider()
    base = (sys.modules["airflow.hooks.base"].BaseHook if fake_airflow.major == 2
            else sys.modules["airflow.sdk"].BaseHook)
    hook_cls = p.hooks.PrewarmHook
    assert issubclass(hook_cls, base)
    assert (hook_cls.conn_type, hook_cls.conn_name_attr, hook_cls.default_conn_name,
            hook_cls.hook_name) == ("prewarm", "prewarm_conn_id", "prewarm_default", "Prewarm")
    behaviour = hook_cls.get_ui_field_behaviour()
    assert set(behaviour) == {"hidden_fields", "relabeling", "placeholders"}
    assert "password" in behaviour["relabeling"]
    json.loads(behaviour["placeholders"]["extra"])  # a valid example
    assert hook_cls.get_connection_form_widgets() == {}  # no web-UI libraries here
    fake_airflow.set_connection("prewarm_default", conn_type="prewarm", host="prewarm.svc",
                                port=50052, password="tok",
                                extra={"tls": "true", "timeout": 0.5,
                                       "service_map": {"seed.task1": "svc-a"},
                                       "service_pattern": "{dag_id}-{task_id}"})
    settings = hook_cls().settings()
    assert settings.target == "prewarm.svc:50052" and settings.tls and settings.token == "tok"
    assert settings.timeout == 0.5 and settings.flush_timeout == 3.0  # 4 calls + 1 s
    assert settings.service_map == {"seed.task1": "svc-a"}
    assert settings.service_pattern == "{dag_id}-{task_id}"
    assert "tok" not in repr(settings)
    # Missing connection: Airflow's exception, from get_connection.
    with pytest.raises(Exception, match="isn't defined"):
        hook_cls("nope").settings()


def test_settings_parsing_and_config_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider()
    Conn = p._compat.Connection
    parse = p.settings.PrewarmSettings.from_connection
    assert parse(Conn(host=None)).target == "127.0.0.1:50051"
    assert parse(Conn(host="10.0.0.7")).target == "10.0.0.7:50051"
    assert parse(Conn(host="prewarm:6000")).target == "prewarm:6000"
    assert parse(Conn(host="dns:///prewarm.svc:50051")).target == "dns:///prewarm.svc:50051"
    assert parse(Conn(host="h", extra={"token": "t"})).token == "t"
    monkeypatch.setenv("AIRFLOW__PREWARM__SERVICE_MAP", '{"a": "from-config", "b": "cfg-b"}')
    monkeypatch.setenv("AIRFLOW__PREWARM__SERVICE_PATTERN", "{task_id}-svc")
    s = parse(Conn(host="h", extra={"service_map": {"a": "from-extra"}}))
    assert s.service_map == {"a": "from-extra", "b": "cfg-b"}
    assert s.service_pattern == "{task_id}-svc"
    monkeypatch.setenv("AIRFLOW__PREWARM__ENABLED", "false")
    assert not parse(Conn(host="h")).enabled
    with pytest.raises(ValueError):
        parse(Conn(host="h", extra={"tls": "maybe"}))


def test_stand_in_reads_airflow_conn_environment_variables(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    p = provider()
    monkeypatch.setenv("AIRFLOW_CONN_PREWARM_DEFAULT",
                       "prewarm://:my%2Ftoken@prewarm.example:7000?tls=true&timeout=1.5")
    s = p.hooks.PrewarmHook().settings()
    assert (s.target, s.token, s.tls, s.timeout) == ("prewarm.example:7000", "my/token", True, 1.5)
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", json.dumps(
        {"conn_type": "prewarm", "host": "h", "port": 1234,
         "extra": {"service_map": {"t": "s"}}}))
    s = p.hooks.PrewarmHook("other").settings()
    assert s.target == "h:1234" and s.service_map == {"t": "s"}
    with pytest.raises(LookupError):
        p.hooks.PrewarmHook("absent").settings()


def test_hook_talks_to_prewarmd(shared_prewarmd: harness.Prewarmd, monkeypatch: pytest.MonkeyPatch
                                ) -> None:
    p = provider()
    monkeypatch.setenv("AIRFLOW_CONN_PREWARM_DEFAULT",
                       f"prewarm://{shared_prewarmd.address}?timeout=3")
    hook = p.hooks.PrewarmHook()
    ok, message = hook.test_connection()
    assert ok, message
    run_id = f"manual-{uuid.uuid4().hex[:6]}"
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    plan = hook.prewarm_dag_run(seed_dag(), run_id, start_time=start)
    assert plan.run_id == f"seed/{run_id}"
    assert [t.service for t in plan.tasks] == ["svc-a", "svc-b", "svc-c"]
    assert hook.prewarm_dag_run(seed_dag(), run_id, start_time=start) is None  # already there
    hook.get_conn().cancel_run(plan.run_id)
    hook.close()
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", f"prewarm://127.0.0.1:{harness.closed_port()}")
    down = p.hooks.PrewarmHook("down")
    ok, message = down.test_connection()
    assert not ok and message
    down.close()


def test_prewarm_dag_run_passes_duration_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider()
    monkeypatch.setenv("AIRFLOW_CONN_HINTS", "prewarm://127.0.0.1:1")
    hook = p.hooks.PrewarmHook("hints")
    recorder = RecordingClient()
    monkeypatch.setattr(hook, "get_conn", lambda: recorder)
    hook.prewarm_dag_run(seed_dag(), "manual-1",
                         expected_durations={"task1": 30, "task3": dt.timedelta(minutes=2)})
    (announce,) = recorder.of("prewarm")
    assert {t["task_id"]: t.get("expected_duration") for t in announce[3]} == {
        "task1": 30, "task2": None, "task3": dt.timedelta(minutes=2)}
    with pytest.raises(ValueError, match=r"has no task \['taskX'\]"):
        hook.prewarm_dag_run(seed_dag(), "manual-2", expected_durations={"taskX": 1})


# DAG structure and services -----------------------------------------------------------------


def test_service_resolution_order() -> None:
    p = provider()
    dag = airflow_fakes.make_dag("etl", [
        ("by_param", (), {"params": {"prewarm_service": "svc-param"},
                          "prewarm_service": "svc-attr"}),
        ("by_attr", ("by_param",), {"prewarm_service": "svc-attr"}),
        ("by_dag_map", ("by_attr",), {}),
        ("by_task_map", ("by_attr",), {}),
        ("by_pattern", ("by_dag_map", "by_task_map"), {}),
        ("unregistered", ("by_pattern",), {}),
    ])
    settings = settings_for(p, service_map={"etl.by_dag_map": "svc-dag-map",
                                            "by_task_map": "svc-task-map",
                                            "etl.by_param": "ignored"},
                            service_pattern="{dag_id}-{task_id}")
    nodes = p.dags.dag_structure("etl", dag, settings)
    tasks = {t["task_id"]: t for t in p.dags.resolve(nodes, settings,
                                                     registered={"etl-by_pattern"})}
    assert tasks["by_param"]["service"] == "svc-param"
    assert tasks["by_attr"]["service"] == "svc-attr"
    assert tasks["by_dag_map"]["service"] == "svc-dag-map"
    assert tasks["by_task_map"]["service"] == "svc-task-map"
    assert tasks["by_pattern"]["service"] == "etl-by_pattern"
    assert tasks["unregistered"]["service"] == ""  # pattern name not registered
    assert tasks["by_pattern"]["upstream"] == ["by_dag_map", "by_task_map"]
    loose = p.dags.resolve(nodes, settings.__class__(**{**settings.__dict__,
                                                        "pattern_requires_registered": False}),
                           registered=None)
    assert {t["task_id"]: t["service"] for t in loose}["unregistered"] == "etl-unregistered"
    # The scheduler's serialized DAG: operator attributes are gone, params are Param objects.
    serialized = p.dags.resolve(p.dags.dag_structure("etl", dag.serialized(), settings),
                                settings, registered=set())
    by_id = {t["task_id"]: t["service"] for t in serialized}
    assert by_id["by_param"] == "svc-param" and by_id["by_attr"] == ""


def test_server_run_ids() -> None:
    p = provider()
    assert p.dags.server_run_id("dag", "manual__2024-01-01T00:00:00+00:00") == \
        "dag/manual__2024-01-01T00:00:00+00:00"
    long = p.dags.server_run_id("d" * 250, "r" * 250)
    assert len(long) <= 250 and long == p.dags.server_run_id("d" * 250, "r" * 250)
    assert long != p.dags.server_run_id("d" * 250, "r" * 249 + "x")


# The listener, through pluggy, per version ---------------------------------------------------


@ALL_VERSIONS
def test_listener_sends_the_run_and_task_events(fake_airflow: FakeAirflow) -> None:
    p = provider()
    recorder = use_recorder(p)
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag = seed_dag()
    dag_run = airflow_fakes.DagRun(dag, "manual__1")
    fake_airflow.dag_run_running(dag_run)
    tis = {t: fake_airflow.task_instance(dag_run, t) for t in ("task1", "task2", "task3")}
    fake_airflow.task_running(tis["task1"])
    fake_airflow.task_success(tis["task1"])  # flushes: the task process ends after this hook
    assert [c[0] for c in recorder.calls] == ["prewarm", "report", "report"]
    _, run_id, workflow, tasks, kwargs = recorder.calls[0]
    assert (run_id, workflow) == ("seed/manual__1", "seed")
    assert tasks == [{"task_id": "task1", "service": "svc-a", "upstream": []},
                     {"task_id": "task2", "service": "svc-b", "upstream": ["task1"]},
                     {"task_id": "task3", "service": "svc-c", "upstream": ["task2"]}]
    assert kwargs["start_time"] == dag_run.start_date
    started, finished = recorder.calls[1], recorder.calls[2]
    assert started[1:4] == ("seed/manual__1", "task1", "started")
    assert started[4]["event_time"] == tis["task1"].start_date
    assert finished[1:4] == ("seed/manual__1", "task1", "finished")
    assert finished[4]["event_time"] == tis["task1"].end_date
    # task2 fails and is retried, then fails for good; task3 never runs.
    fake_airflow.task_running(tis["task2"])
    fake_airflow.task_failed(tis["task2"], RuntimeError("boom"), retry=True)
    fake_airflow.task_running(tis["task2"])
    fake_airflow.task_failed(tis["task2"], RuntimeError("boom"))
    events = [(c[2], c[3]) for c in recorder.of("report")]
    assert events[2:] == [("task2", "started"), ("task2", "started"), ("task2", "failed")]
    tis["task3"].state = TaskInstanceState.UPSTREAM_FAILED
    fake_airflow.dag_run_failed(dag_run)
    assert p.listener.get_listener().flush(5, run_delayed=True)
    assert (recorder.of("report")[-1][2:4]) == ("task3", "skipped")
    assert recorder.of("cancel_run") == [("cancel_run", "seed/manual__1")]
    # The listener reads no answer (the recorder answers None): every report, from the task
    # process and from the end of the run, asks for the summary.
    assert [c[4].get("view") for c in recorder.of("report")] == ["summary"] * 6


@pytest.mark.parametrize("fake_airflow", ["3.2"], indirect=True)
def test_listener_reports_a_self_skipped_task_on_airflow_3(fake_airflow: FakeAirflow) -> None:
    p = provider()
    recorder = use_recorder(p)
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag_run = airflow_fakes.DagRun(seed_dag(), "r")
    ti = fake_airflow.task_instance(dag_run, "task1")
    fake_airflow.task_running(ti)
    fake_airflow.task_skipped(ti)
    assert p.listener.get_listener().flush(5)
    assert [c[3] for c in recorder.of("report")] == ["started", "skipped"]


@ALL_VERSIONS
def test_listener_ignores_mapped_instances_and_respects_enabled(fake_airflow: FakeAirflow
                                                                ) -> None:
    p = provider()
    recorder = use_recorder(p)
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag_run = airflow_fakes.DagRun(seed_dag(), "r")
    ti = fake_airflow.task_instance(dag_run, "task1")
    ti.map_index = 3
    fake_airflow.task_running(ti)
    fake_airflow.task_success(ti)
    assert recorder.calls == []
    recorder = use_recorder(p, enabled=False)
    fake_airflow.dag_run_running(dag_run)
    ti.map_index = -1
    fake_airflow.task_running(ti)
    fake_airflow.task_success(ti)
    assert recorder.calls == []


@ALL_VERSIONS
def test_listener_without_a_connection_is_inactive(fake_airflow: FakeAirflow,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    p = provider()
    pm = fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag_run = airflow_fakes.DagRun(seed_dag(), "r")
    ti = fake_airflow.task_instance(dag_run, "task1")
    with caplog.at_level(logging.WARNING, logger="prewarm_client.airflow"):
        fake_airflow.dag_run_running(dag_run)
        fake_airflow.task_running(ti)
        fake_airflow.task_success(ti)
        fake_airflow.dag_run_success(dag_run)
        p.listener.get_listener().flush(5)  # the connection is read on the reporter's thread
    assert "prewarm_default" in caplog.text and "inactive" in caplog.text
    assert caplog.text.count("cannot read connection") == 1  # rate-limited
    assert pm.is_registered(p.listener)


@ALL_VERSIONS
def test_listener_never_raises(fake_airflow: FakeAirflow, caplog: pytest.LogCaptureFixture
                               ) -> None:
    p = provider()
    use_recorder(p)
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    broken = types.SimpleNamespace(dag_id=None)  # not a TaskInstance at all
    with caplog.at_level(logging.WARNING, logger="prewarm_client.airflow"):
        fake_airflow.hook.on_dag_run_running(dag_run=broken, msg="started")
        fake_airflow.hook.on_task_instance_success(
            previous_state=None, task_instance=broken,
            **({"session": None} if fake_airflow.major == 2 else {}))
    assert "on_dag_run_running failed" in caplog.text


def test_hooks_can_be_called_directly_with_either_signature() -> None:
    p = provider()
    recorder = use_recorder(p)
    fake = airflow_fakes.FakeAirflow("2.10")
    dag_run = airflow_fakes.DagRun(seed_dag(), "r")
    ti = fake.task_instance(dag_run, "task1")
    ti.start_date = ti.end_date = airflow_fakes.utcnow()
    p.listener.on_task_instance_running(previous_state=None, task_instance=ti,
                                        session=airflow_fakes.Session())
    p.listener.on_task_instance_running(None, ti)
    p.listener.on_task_instance_failed(previous_state=None, task_instance=ti, error="x",
                                       session=None)
    p.listener.on_task_instance_failed(None, ti, "x")
    p.listener.on_dag_run_running(dag_run=dag_run, msg="started", session=None)
    assert p.listener.get_listener().flush(5)
    assert len(recorder.of("report")) == 4 and len(recorder.of("prewarm")) == 1


def test_reporter_bounded_queue_order_delay_and_backoff() -> None:
    p = provider()
    gate = threading.Event()
    seen: list[str] = []
    reporter = p.reporter.Reporter(lambda: RecordingClient(), queue_size=3, backoff=60)
    assert reporter.submit(lambda c: gate.wait(5), "blocker")
    assert reporter.submit(lambda c: seen.append("a"), "a")
    assert reporter.submit(lambda c: seen.append("b"), "b")
    assert not reporter.submit(lambda c: seen.append("c"), "c")  # full: dropped
    assert reporter.dropped == 1
    assert not reporter.flush(0.05)
    gate.set()
    assert reporter.flush(5)
    assert seen == ["a", "b"]
    assert reporter.submit(lambda c: seen.append("later"), "later", delay=30)
    assert reporter.flush(1)  # delayed jobs do not hold a plain flush
    assert seen == ["a", "b"]
    assert reporter.flush(1, run_delayed=True)
    assert seen == ["a", "b", "later"]

    def down(client: Any) -> None:
        raise UnavailableError("connection refused")

    assert reporter.submit(down, "first")
    assert reporter.submit(lambda c: seen.append("during backoff"), "second")
    assert reporter.flush(5)
    assert "during backoff" not in seen and reporter.failed == 1 and reporter.dropped == 2

    def crash(client: Any) -> None:
        raise KeyError("anything")

    ok = p.reporter.Reporter(lambda: RecordingClient())
    ok.submit(crash, "crash")
    ok.submit(lambda c: seen.append("after crash"), "next")
    assert ok.flush(5) and seen[-1] == "after crash" and ok.failed == 1
    reporter.close()
    ok.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_reporter_after_fork_uses_its_own_thread() -> None:
    p = provider()
    reporter = p.reporter.Reporter(lambda: RecordingClient())
    assert reporter.submit(lambda c: None, "warm the thread") and reporter.flush(5)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: Airflow 2's task runner forks like this
        code = 1
        try:
            done: list[str] = []
            reporter.submit(lambda c: done.append("x"), "in child")
            code = 0 if reporter.flush(5) and done == ["x"] else 2
        finally:
            os.write(write_fd, bytes([code]))
            os._exit(code)
    os.close(write_fd)
    status = os.read(read_fd, 1)
    os.waitpid(pid, 0)
    os.close(read_fd)
    assert status == bytes([0])
    reporter.close()


# With prewarmd down ---------------------------------------------------------------------------


class BlackHoleServer:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        import socket  # noqa: PLC0415
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("fake_airflow", ["2.10", "3.1"], indirect=True)
@pytest.mark.parametrize("down", ["refused", "black hole"])
def test_listener_with_server_down_returns_within_its_deadline(fake_airflow: FakeAirflow,
                                                               down: str) -> None:
    p = provider()
    hole = BlackHoleServer() if down == "black hole" else None
    port = hole.port if hole else harness.closed_port()
    fake_airflow.set_connection("prewarm_default", conn_type="prewarm", host="127.0.0.1",
                                port=port, extra={"timeout": 0.5, "flush_timeout": 1.0})
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    try:
        for run in range(3):
            dag_run = airflow_fakes.DagRun(seed_dag(), f"run-{run}")
            timings = []
            t0 = time.monotonic()
            fake_airflow.dag_run_running(dag_run)
            timings.append(("dag_run_running", time.monotonic() - t0))
            for task_id in ("task1", "task2", "task3"):
                ti = fake_airflow.task_instance(dag_run, task_id)
                t0 = time.monotonic()
                fake_airflow.task_running(ti)
                timings.append(("running", time.monotonic() - t0))
                t0 = time.monotonic()
                fake_airflow.task_success(ti)
                timings.append(("success", time.monotonic() - t0))
            t0 = time.monotonic()
            fake_airflow.dag_run_success(dag_run)
            timings.append(("dag_run_success", time.monotonic() - t0))
            for what, seconds in timings:
                # Non-terminal hooks only queue; terminal ones wait at most flush_timeout (1 s).
                limit = 1.3 if what == "success" else 0.2
                assert seconds < limit, (what, seconds, timings)
        reporter = p.reporter.shared_reporter("prewarm_default", lambda: None)
        assert reporter.sent == 0 and reporter.failed >= 1
    finally:
        if hole:
            hole.close()


@pytest.mark.parametrize("fake_airflow", ["2.10", "3.1"], indirect=True)
def test_listener_retries_a_standby_within_its_budget(fake_airflow: FakeAirflow,
                                                      flaky: tuple[FlakyService, str]) -> None:
    """A replica that answers UNAVAILABLE (a standby during a failover) three times, then leads:
    the announcement arrives, nothing is dropped. One that never leads: the task's last hook
    still returns within flush_timeout, after several attempts."""
    service, target = flaky
    host, port = target.rsplit(":", 1)
    service.failures = 3
    p = provider()
    fake_airflow.set_connection("prewarm_default", conn_type="prewarm", host=host, port=int(port),
                                extra={"timeout": 1, "flush_timeout": 2,
                                       "retry_max_backoff": 0.1})
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    fake_airflow.dag_run_running(airflow_fakes.DagRun(seed_dag(), "run-1"))
    listener = p.listener.get_listener()
    assert listener.flush(timeout=10)
    announced = [r.run_id for r in service.requests if isinstance(r, pb2.PrewarmRequest)]
    assert announced == ["seed/run-1"] * 4
    reporter = listener.reporter()
    assert reporter.sent == 1 and reporter.failed == 0 and reporter.dropped == 0

    service.failures = 10**6
    before = len(service.arrivals)
    ti = fake_airflow.task_instance(airflow_fakes.DagRun(seed_dag(), "run-2"), "task1")
    t0 = time.monotonic()
    fake_airflow.task_running(ti)
    fake_airflow.task_success(ti)  # the task's last hook: flushes, bounded by flush_timeout
    assert time.monotonic() - t0 < 2.5
    assert len(service.arrivals) - before > 2
    assert reporter.failed == 1


@pytest.mark.parametrize("extra,field,value", [
    ({}, "seed_history", True), ({"seed_history": "false"}, "seed_history", False),
    ({}, "history_runs", 20), ({"history_runs": "5"}, "history_runs", 5),
    ({}, "history_ttl", 600.0), ({"history_ttl": 0}, "history_ttl", 0.0),
    ({}, "retry_attempts", 8), ({"retry_attempts": 1}, "retry_attempts", 1),
    ({"retry_max_backoff": 0.5}, "retry_max_backoff", 0.5),
])
def test_history_and_retry_settings(extra: dict[str, Any], field: str, value: Any) -> None:
    p = provider()
    conn = types.SimpleNamespace(host="h", port=1, password=None, extra_dejson=extra)
    settings = p.settings.PrewarmSettings.from_connection(conn, config=False)
    assert getattr(settings, field) == value
    kwargs = settings.client_kwargs()
    assert kwargs["retry"].max_attempts == settings.retry_attempts
    assert kwargs["attempt_timeout"] == settings.timeout


@pytest.mark.parametrize("extra,named", [
    ({"history_runs": 0}, "history_runs"), ({"history_runs": 1001}, "history_runs"),
    ({"history_runs": 2.5}, "history_runs"), ({"history_ttl": -1}, "history_ttl"),
    ({"retry_attempts": 0}, "retry_attempts"), ({"retry_attempts": True}, "retry_attempts"),
    ({"retry_max_backoff": 61}, "retry_max_backoff"), ({"seed_history": "maybe"}, "maybe"),
])
def test_bad_history_and_retry_settings_are_named(extra: dict[str, Any], named: str) -> None:
    p = provider()
    conn = types.SimpleNamespace(host="h", port=1, password=None, extra_dejson=extra)
    with pytest.raises(ValueError, match=named):
        p.settings.PrewarmSettings.from_connection(conn, config=False)


@pytest.mark.parametrize("fake_airflow", ["2.10"], indirect=True)
def test_seed_history_can_be_turned_off_in_airflows_config(fake_airflow: FakeAirflow) -> None:
    p = provider()
    conn = types.SimpleNamespace(host="h", port=1, password=None, extra_dejson={})
    assert p.settings.PrewarmSettings.from_connection(conn).seed_history
    fake_airflow.config[("prewarm", "seed_history")] = "False"
    assert not p.settings.PrewarmSettings.from_connection(conn).seed_history


@pytest.mark.parametrize("seed_history", [True, False])
@pytest.mark.parametrize("fake_airflow", ["2.7", "3.1"], indirect=True)
def test_announcements_carry_history_hints_unless_turned_off(fake_airflow: FakeAirflow,
                                                             seed_history: bool) -> None:
    """A finished run in Airflow's history (and one still running, which does not count): the
    next announcement carries the finished run's durations, or none with seed_history off."""
    p = provider()
    recorder = use_recorder(p, seed_history=seed_history)
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag = seed_dag()
    past = airflow_fakes.DagRun(dag, "manual__0")
    fake_airflow.dag_runs[(past.dag_id, past.run_id)] = past
    past.state = airflow_fakes.DagRunState.SUCCESS
    for task_id, seconds in (("task1", 4.0), ("task2", 9.0)):
        ti = fake_airflow.task_instance(past, task_id)
        ti.state, ti.end_date = TaskInstanceState.SUCCESS, airflow_fakes.utcnow()
        ti.start_date = ti.end_date - dt.timedelta(seconds=seconds)
    running = airflow_fakes.DagRun(dag, "manual__1")
    fake_airflow.dag_run_running(running)
    assert p.listener.get_listener().flush(5)
    (announce,) = recorder.of("prewarm")
    hints = {t["task_id"]: t.get("expected_duration") for t in announce[3]}
    assert hints == ({"task1": 4.0, "task2": 9.0, "task3": None} if seed_history
                     else {"task1": None, "task2": None, "task3": None})
    assert p.listener.get_listener().duration_hints.reads == (1 if seed_history else 0)


def test_duration_hints_are_robust_medians_cached_per_dag() -> None:
    """history.py without Airflow: medians within prewarmd's bounds, a TTL cache, a failed read
    giving no hints for a shorter while."""
    h = importlib.import_module("prewarm_client.airflow.history")
    assert h.median_hints([("a", 10.0), ("a", 12.0), ("a", 900.0), ("b", 0.0), ("b", -5.0),
                           ("c", 8 * 86400.0), ("d", None)]) == {"a": 12.0, "b": 0.001}
    now = [0.0]
    calls: list[str] = []

    def reader(dag_id: str, runs: int, timeout: float) -> list[tuple[str, float]]:
        calls.append(dag_id)
        if dag_id == "broken":
            raise RuntimeError("database is locked")
        return [("t", 3.0)]

    hints = h.DurationHints(reader, clock=lambda: now[0])
    assert hints.get("etl", 20, ttl=600, timeout=1) == {"t": 3.0}
    now[0] = 599.0
    assert hints.get("etl", 20, ttl=600, timeout=1) == {"t": 3.0} and calls == ["etl"]
    now[0] = 600.0
    assert hints.get("etl", 20, ttl=600, timeout=1) == {"t": 3.0} and calls == ["etl"] * 2
    assert hints.get("broken", 20, ttl=600, timeout=1) == {}
    now[0] = 600.0 + h.FAILURE_TTL_SECONDS - 1
    assert hints.get("broken", 20, ttl=600, timeout=1) == {} and calls.count("broken") == 1
    now[0] = 600.0 + h.FAILURE_TTL_SECONDS
    hints.get("broken", 20, ttl=600, timeout=1)
    assert calls.count("broken") == 2 and hints.failures == 2


# Against a real prewarmd: next runs, announcing from a task, the end of a run ----------------


@pytest.fixture
def prewarm_conn(fake_airflow: FakeAirflow, shared_prewarmd: harness.Prewarmd
                 ) -> Iterator[PrewarmClient]:
    fake_airflow.set_connection("prewarm_default", conn_type="prewarm", host="127.0.0.1",
                                port=shared_prewarmd.grpc_port,
                                extra={"timeout": 5, "cancel_grace": 0})
    client = PrewarmClient(shared_prewarmd.address, timeout=5)
    client.register_service("svc-next", warmup_url="http://127.0.0.1:9/warmup",
                            cold_start_prior=1.0, keep_alive=60)
    yield client
    client.close()


@pytest.mark.parametrize("fake_airflow", ["2.10", "3.1"], indirect=True)
def test_task_announces_a_run_the_scheduler_did_not(fake_airflow: FakeAirflow,
                                                    prewarm_conn: PrewarmClient) -> None:
    p = provider()
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag_run = airflow_fakes.DagRun(seed_dag(), f"manual__{uuid.uuid4().hex[:6]}",
                                   dag_attached=False)
    fake_airflow.dag_run_running(dag_run)  # no DAG loaded: nothing announced
    ti = fake_airflow.task_instance(dag_run, "task1")
    fake_airflow.task_running(ti)
    assert p.listener.get_listener().flush(10)
    plan = prewarm_conn.get_plan(f"seed/{dag_run.run_id}")
    states = {t.task_id: t.task_state for t in plan.tasks}
    assert states["task1"] == pb2.TASK_STATE_RUNNING
    assert [t.service for t in plan.tasks] == ["svc-a", "svc-b", "svc-c"]
    prewarm_conn.cancel_run(plan.run_id)


@pytest.mark.parametrize("fake_airflow", ["2.10", "3.1"], indirect=True)
def test_end_of_run_reports_tasks_that_never_ran(fake_airflow: FakeAirflow,
                                                 prewarm_conn: PrewarmClient) -> None:
    p = provider()
    fake_airflow.listener_manager([p.plugin.PrewarmPlugin])
    dag = airflow_fakes.make_dag("branchy", [
        ("choose", (), {}),
        ("taken", ("choose",), {}),
        ("not_taken", ("choose",), {}),
    ])
    dag_run = airflow_fakes.DagRun(dag, f"manual__{uuid.uuid4().hex[:6]}")
    fake_airflow.dag_run_running(dag_run)
    for task_id in ("choose", "taken"):
        ti = fake_airflow.task_instance(dag_run, task_id)
        fake_airflow.task_running(ti)
        fake_airflow.task_success(ti)
    skipped = fake_airflow.task_instance(dag_run, "not_taken")
    skipped.state = TaskInstanceState.SKIPPED  # set by the branch operator, no listener call
    fake_airflow.dag_run_success(dag_run)
    assert p.listener.get_listener().flush(10, run_delayed=True)
    plan = prewarm_conn.get_plan(f"branchy/{dag_run.run_id}")  # retired: every task settled
    states = {t.task_id: t.task_state for t in plan.tasks}
    assert states == {"choose": pb2.TASK_STATE_SUCCEEDED, "taken": pb2.TASK_STATE_SUCCEEDED,
                      "not_taken": pb2.TASK_STATE_SKIPPED}
    with pytest.raises(NotFoundError):
        prewarm_conn.report(plan.run_id, "taken", "started")  # retired


# Calling a service: cold or warm ---------------------------------------------------------------


class ServiceStub:
    """An HTTP service answering with configurable headers after `delay` seconds."""

    def __init__(self) -> None:
        stub = self
        self.headers: dict[str, str] = {}
        self.status = 200
        self.delay = 0.0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                time.sleep(stub.delay)
                body = b'{"ok": true}'
                self.send_response(stub.status)
                for k, v in stub.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/work"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service_stub() -> Iterator[ServiceStub]:
    stub = ServiceStub()
    yield stub
    stub.close()


def test_classify_cold_calls() -> None:
    classify = provider().hooks.classify
    assert classify({"x-gateway-cold-start": "true", "x-gateway-wait-seconds": "0.31"}, 1.0) == \
        (True, 0.31, "gateway header")
    assert classify({"x-gateway-cold-start": "false", "x-process-cold": "true"}, 1.0) == \
        (False, None, "gateway header")
    assert classify({"x-process-cold": "true"}, 1.0) == (True, None, "service header")
    assert classify({}, 2.0, cold_threshold=1.5) == (True, None, "threshold")
    assert classify({}, 1.0, cold_threshold=1.5) == (False, None, "threshold")
    assert classify({}, 3.0, learned=(2.0, 1.0)) == (True, 2.0, "learned")
    assert classify({}, 1.1, learned=(2.0, 1.0)) == (False, None, "learned")
    assert classify({}, 1.0) == (None, None, "unknown")


@pytest.mark.parametrize("fake_airflow", ["2.10", "3.1"], indirect=True)
def test_operator_calls_the_service_and_reports_cold(fake_airflow: FakeAirflow,
                                                     prewarm_conn: PrewarmClient,
                                                     service_stub: ServiceStub) -> None:
    p = provider()
    operator_cls = p.operators.PrewarmServiceOperator
    base = (sys.modules["airflow.models.baseoperator"].BaseOperator if fake_airflow.major == 2
            else sys.modules["airflow.sdk"].BaseOperator)
    assert issubclass(operator_cls, base)
    service = f"svc-op-{uuid.uuid4().hex[:6]}"
    op = operator_cls(task_id="call", url=service_stub.url, service=service)
    assert op.params["prewarm_service"] == service  # the listener's source of truth
    dag = airflow_fakes.DAG("opdag", [op])
    dag_run = airflow_fakes.DagRun(dag, f"manual__{uuid.uuid4().hex[:6]}")
    prewarm_run = f"opdag/{dag_run.run_id}"
    prewarm_conn.prewarm(prewarm_run, "opdag", [{"task_id": "call", "service": service}])
    prewarm_conn.report(prewarm_run, "call", "started")
    ti = fake_airflow.task_instance(dag_run, "call")
    service_stub.headers = {"X-Gateway-Cold-Start": "true", "X-Gateway-Wait-Seconds": "0.25"}
    body = op.execute({"ti": ti, "task_instance": ti, "run_id": dag_run.run_id,
                       "dag_run": dag_run})
    assert json.loads(body) == {"ok": True}
    assert p.reporter.flush_all(10)
    plan = prewarm_conn.get_plan(prewarm_run)
    assert plan.tasks[0].outcome == pb2.TASK_OUTCOME_MISS
    stats = prewarm_conn.service_stats(service)
    assert stats.cold_start.sample_count == 1
    assert abs(convert.to_seconds(stats.cold_start.p50) - 0.25) < 1e-3
    prewarm_conn.cancel_run(prewarm_run)


def test_report_invocation_asks_for_the_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider()
    hook = p.hooks.PrewarmHook()
    recorder = RecordingClient()
    monkeypatch.setattr(hook, "get_conn", lambda: recorder)
    result = p.hooks.ServiceCallResult(url="http://svc", status=200, body=b"", headers={},
                                       started=1.0e9, elapsed=0.1, cold=True, cold_start=0.25,
                                       cold_source="service header")
    hook.report_invocation("d", "r", "t", result, mode="sync")
    assert recorder.of("report") == [
        ("report", "d/r", "t", "service_invoked",
         {"event_time": 1.0e9, "cold": True, "cold_start": 0.25, "view": "summary"})]


def test_call_service_reports_warm_and_raises_for_status(shared_prewarmd: harness.Prewarmd,
                                                         service_stub: ServiceStub,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider()
    monkeypatch.setenv("AIRFLOW_CONN_PREWARM_DEFAULT", f"prewarm://{shared_prewarmd.address}")
    hook = p.hooks.PrewarmHook()
    client = hook.get_conn()
    run_id = f"calls/{uuid.uuid4().hex[:6]}"
    client.prewarm(run_id, "calls", [{"task_id": "t", "service": "svc-call"}])
    service_stub.headers = {"X-Process-Cold": "false"}
    service_stub.delay = 0.05
    result = hook.call_service(service_stub.url, dag_id="calls", run_id=run_id.split("/", 1)[1],
                               task_id="t", service="svc-call", report="sync")
    assert result.ok and result.cold is False and result.cold_source == "service header"
    assert result.elapsed >= 0.05
    assert client.get_plan(run_id).tasks[0].outcome == pb2.TASK_OUTCOME_HIT
    # No header and too little history to learn from: unknown, reported without `cold`.
    service_stub.headers = {}
    unknown = hook.call_service(service_stub.url, service="svc-call")
    assert unknown.cold is None and unknown.cold_source == "unknown"
    service_stub.status = 503
    import urllib.error  # noqa: PLC0415
    with pytest.raises(urllib.error.HTTPError):
        hook.call_service(service_stub.url)
    failed = hook.call_service(service_stub.url, raise_for_status=False)
    assert failed.status == 503 and not failed.ok
    client.cancel_run(run_id)
    hook.close()
