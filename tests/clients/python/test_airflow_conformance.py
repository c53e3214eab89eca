"""The listener inside Airflow's own code, every version from 2.7.0 to main (airflow_runtime.py):
the scheduler's guarded session, the metastore connection lookup, each version's hook order and
task-instance attributes, the timetable's run ids, and task processes that end with os._exit
against a real prewarmd."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import support

support.need_stubs()

import airflow_runtime as ar  # noqa: E402
from airflow_fakes import RecordingClient  # noqa: E402
from airflow_fakes import _forget_provider  # noqa: E402
from prewarm_client import PrewarmClient, pb2  # noqa: E402
from support import harness  # noqa: E402

if ar.source_root() is None:
    pytest.skip(ar.missing_reason(), allow_module_level=True)

ALL = pytest.mark.parametrize("version", ar.VERSIONS)
V2 = [v for v in ar.VERSIONS if v.startswith("2.")]
CONN_EXTRA = {"service_map": {"c": "svc-c"}, "flush_timeout": 10, "cancel_grace": 0.2}


@pytest.fixture
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ar.Runtime]:
    """Airflow `version`'s real code installed, with the provider imported against it."""
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        os.environ.pop(key)
    _forget_provider()
    rt = ar.install(request.param, tmp_path / "airflow.db")
    try:
        yield rt
    finally:
        _forget_provider()
        ar.uninstall()
        os.environ.pop("AIRFLOW_CONN_PREWARM_DEFAULT", None)


def provider(rt: ar.Runtime, client: Any, **listener_kwargs: Any) -> Any:
    """Imports the provider against the runtime, registers its plugin with Airflow's real
    ListenerManager, and makes the listener send to `client`."""
    listener = importlib.import_module("prewarm_client.airflow.listener")
    plugin = importlib.import_module("prewarm_client.airflow.plugin")
    rt.listener_manager([plugin.PrewarmPlugin])
    listener.set_listener(listener.PrewarmListener(
        conn_id="prewarm_default", client_factory=lambda s: client, **listener_kwargs))
    return listener


def store_connection(rt: ar.Runtime, where: str, port: int = 50051) -> None:
    if where == "metastore":
        rt.add_connection("prewarm_default", host="127.0.0.1", port=port, extra=CONN_EXTRA)
    elif where == "env":
        import json  # noqa: PLC0415
        os.environ["AIRFLOW_CONN_PREWARM_DEFAULT"] = json.dumps(
            {"conn_type": "prewarm", "host": "127.0.0.1", "port": port, "extra": CONN_EXTRA})
    else:  # the 3.x task SDK's supervisor
        from prewarm_client.airflow._compat import Connection  # noqa: PLC0415
        rt.supervisor_connections["prewarm_default"] = Connection(
            "prewarm_default", "prewarm", host="127.0.0.1", port=port, extra=CONN_EXTRA)


def chain_dag(**kwargs: Any) -> ar.Dag:
    return ar.Dag("etl", [ar.Operator("a", service="svc-a"),
                          ar.Operator("b", ["a"], service="svc-b", retries=kwargs.pop("retries", 0)),
                          ar.Operator("c", ["b"])], **kwargs)


class BlockedClient(RecordingClient):
    """Its reports wait until `release` is set: a hook that flushed would wait with them."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def report(self, *args: Any, **kwargs: Any) -> Any:
        self.release.wait(30)
        return super().report(*args, **kwargs)


def reports(client: RecordingClient) -> list[tuple[str, str]]:
    return [(c[2], c[3]) for c in client.of("report")]


# The scheduler ------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_plugin_registers_with_airflows_listener_manager(runtime: ar.Runtime) -> None:
    provider(runtime, RecordingClient())
    hook = runtime.hook
    for name in ("on_starting", "before_stopping", "on_dag_run_running", "on_dag_run_success",
                 "on_dag_run_failed", "on_task_instance_running", "on_task_instance_success",
                 "on_task_instance_failed"):
        assert getattr(hook, name).get_hookimpls(), name
    # Airflow's spec decides whether the skipped hook exists (3.2+, backported to 3.1.x).
    assert runtime.has_skipped_hook == (runtime.version == "main-2026-spec")


@pytest.mark.parametrize("where", ["metastore", "env"])
@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_scheduler_survives_dag_runs_and_commits_their_states(runtime: ar.Runtime,
                                                              where: str) -> None:
    """The DAG-run hooks run inside the scheduler's guarded session: they must leave it attached
    and uncommitted, and the scheduler then commits the run's state. The connection is read on
    the reporter's thread (a metastore read on the scheduler's thread commits its session)."""
    client = RecordingClient()
    listener = provider(runtime, client)
    store_connection(runtime, where)
    dag = chain_dag()
    runtime.add_run(dag, "manual__1")
    scheduler = ar.Scheduler(runtime)
    scheduler.start_run(dag, "manual__1")
    assert runtime.run_row("etl", "manual__1").state == "running"
    for task_id in ("a", "b"):
        runtime.set_ti_state("etl", "manual__1", task_id, "success")
    scheduler.end_run(dag, "manual__1", ar.DagRunState.SUCCESS,
                      last_pass_states={"c": "upstream_failed"})
    row = runtime.run_row("etl", "manual__1")
    assert row.state == "success" and row.end_date is not None
    assert listener.get_listener().flush(timeout=10, run_delayed=True)
    (announce,) = client.of("prewarm")
    assert announce[1] == "etl/manual__1"
    # The connection's service map reached the announcement: it was read, from `where`.
    assert {t["task_id"]: t["service"] for t in announce[3]} == {
        "a": "svc-a", "b": "svc-b", "c": "svc-c"}
    # The last pass's states were committed before the reporter read them.
    assert reports(client) == [("c", "skipped")]
    assert client.of("cancel_run") == [("cancel_run", "etl/manual__1")]


@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_failure_reported_by_the_executor_neither_blocks_nor_commits(runtime: ar.Runtime) -> None:
    """on_task_instance_failed also fires in the scheduler (executor events): no flush there."""
    client = BlockedClient()
    listener = provider(runtime, client)
    store_connection(runtime, "metastore")
    dag = chain_dag()
    runtime.add_run(dag, "manual__1")
    started = time.monotonic()
    ar.Scheduler(runtime).executor_reports_failure(dag, "manual__1", "a")
    assert time.monotonic() - started < 5.0  # flush_timeout is 10 s: nothing waited for it
    client.release.set()
    assert listener.get_listener().flush(timeout=10)
    assert reports(client) == [("a", "failed")]


# Task processes -----------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_a_retried_attempt_is_not_reported_as_failed(runtime: ar.Runtime) -> None:
    """b has one retry: its first failed attempt is followed by a second one; only the second's
    failure is final (2.7-2.9: the hook runs while the state is still running; 3.0.0: no state
    at all, the server's should_retry flag decides)."""
    client = RecordingClient()
    provider(runtime, client)
    store_connection(runtime, "metastore" if runtime.major == 2 else "supervisor")
    dag = chain_dag(retries=1)
    runtime.add_run(dag, "manual__1")
    for attempt in (1, 2):
        if runtime.major == 2:
            ar.task_process_2x(runtime, dag, "manual__1", "b", "failed")
        else:
            ar.task_process_3x(runtime, dag, "manual__1", "b", "failed", try_number=attempt)
    assert reports(client) == [("b", "started"), ("b", "started"), ("b", "failed")]
    if runtime.major >= 3:
        assert runtime.sdk_connection_reads >= 1  # through the supervisor, not a database


@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_task_process_hooks_report_and_flush(runtime: ar.Runtime) -> None:
    client = RecordingClient()
    provider(runtime, client)
    store_connection(runtime, "metastore" if runtime.major == 2 else "supervisor")
    dag = chain_dag()
    runtime.add_run(dag, "manual__1")
    sent_at_exit: list[list[tuple[str, str]]] = []
    after = lambda: sent_at_exit.append(reports(client))  # noqa: E731 - where os._exit is
    if runtime.major == 2:
        ar.task_process_2x(runtime, dag, "manual__1", "a", "success", after=after)
    else:
        ar.task_process_3x(runtime, dag, "manual__1", "a", "success", after=after)
        ar.task_process_3x(runtime, dag, "manual__1", "b", "skipped", after=after)
    expected = [("a", "started"), ("a", "finished")]
    assert sent_at_exit[0] == expected  # sent before the process would end
    if runtime.has_skipped_hook:
        assert sent_at_exit[1] == expected + [("b", "started"), ("b", "skipped")]


@pytest.mark.parametrize("runtime", [v for v in ar.VERSIONS if not v.startswith("2.")],
                         indirect=True)
def test_api_server_marking_does_not_block(runtime: ar.Runtime) -> None:
    """3.x API server: marking a task succeeds / fails calls the task hooks with the ORM
    TaskInstance (core_api/services/public/task_instances.py:126-128): no flush in a request."""
    client = BlockedClient()
    listener = provider(runtime, client)
    store_connection(runtime, "metastore")
    dag = chain_dag()
    runtime.add_run(dag, "manual__1", states={"a": "success"})
    with runtime.session_module.create_session() as session:
        ti = session.query(ar.TaskInstance).filter_by(task_id="a").one()
        started = time.monotonic()
        runtime.hook.on_task_instance_success(previous_state=None, task_instance=ti)
        assert time.monotonic() - started < 5.0
    client.release.set()
    assert listener.get_listener().flush(timeout=10)
    assert reports(client) == [("a", "finished")]


# The next scheduled run ---------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_next_run_is_announced_with_the_schedulers_run_id(runtime: ar.Runtime) -> None:
    """max_active_runs=1 (next_dagrun_create_after is None while a run is active) and a
    timedelta schedule (a data-interval timetable): the next run is asked of the timetable and
    named by it. 2.x names a scheduled run by its logical date (the interval's start:
    utils/types.py DagRunType.generate_run_id); 3.x by run_after (the interval's end:
    timetables/base.py Timetable.generate_run_id)."""
    client = RecordingClient()
    listener = provider(runtime, client)
    store_connection(runtime, "env")
    hour = dt.timedelta(hours=1)
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - hour / 2
    dag = chain_dag(timetable=ar.delta_timetable(runtime, hour), start_date=start,
                    max_active_runs=1)
    this_run = runtime.DagRunType.SCHEDULED
    run_id = "scheduled__" + ((start - hour if runtime.major == 2 else start).isoformat())
    runtime.add_run(dag, run_id, run_type=str(this_run), interval=(start - hour, start))
    ar.Scheduler(runtime).start_run(dag, run_id)
    assert listener.get_listener().flush(timeout=10)
    next_id = "scheduled__" + ((start if runtime.major == 2 else start + hour).isoformat())
    announced = [c[1] for c in client.of("prewarm")]
    assert announced == [f"etl/{run_id}", f"etl/{next_id}"]
    next_start = client.of("prewarm")[1][4]["start_time"]
    assert next_start == start + hour  # run_after: when the scheduler creates it


# Process exit, against a real prewarmd ------------------------------------------------------


def _fork_task(runtime: ar.Runtime, dag: ar.Dag, run_id: str, task_id: str,
               port: int) -> int:
    """Runs one task attempt in a forked child that ends with os._exit right after the task's
    last hook, as Airflow's task runners do (2.x StandardTaskRunner._start_by_fork; 3.x
    supervisor _fork_main). Returns the child's exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            listener = importlib.import_module("prewarm_client.airflow.listener")
            listener.set_listener(listener.PrewarmListener(conn_id="prewarm_default"))
            if runtime.major == 2:
                ar.task_process_2x(runtime, dag, run_id, task_id, "success")
            else:
                ar.task_process_3x(runtime, dag, run_id, task_id, "success")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("announced", [True, False], ids=["announced", "not-announced"])
@pytest.mark.parametrize("runtime", ["2.7.0", "3.1"], indirect=True)
def test_reports_survive_os_exit(runtime: ar.Runtime, announced: bool,
                                 shared_prewarmd: harness.Prewarmd) -> None:
    """A task process ends with os._exit right after on_task_instance_success: prewarmd has its
    FINISHED. Not announced: the report meets NotFound and the task announces the run itself
    (report, Prewarm, report again: the longest chain) before the process ends."""
    port = shared_prewarmd.grpc_port
    listener = provider(runtime, RecordingClient())
    listener.set_listener(None)
    store_connection(runtime, "metastore" if runtime.major == 2 else "supervisor", port)
    dag = chain_dag()
    run_id = f"manual__{runtime.version}-{announced}"
    runtime.add_run(dag, run_id)
    prewarm_run = f"etl/{run_id}"
    if announced:
        with PrewarmClient(f"127.0.0.1:{port}", timeout=5) as client:
            client.prewarm(prewarm_run, "etl", [{"task_id": "a"}, {"task_id": "b",
                                                                   "upstream": ["a"]}])
    # gRPC's rule: no channel open in a process that forks (see reporter.py); the client above
    # is closed, and the provider's own reporters close theirs at the fork.
    assert _fork_task(runtime, dag, run_id, "a", port) == 0
    with PrewarmClient(f"127.0.0.1:{port}", timeout=5) as client:
        plan = client.get_plan(prewarm_run)
    states = {t.task_id: t.task_state for t in plan.tasks}
    assert states["a"] == pb2.TASK_STATE_SUCCEEDED, plan


@pytest.mark.parametrize("runtime", ["2.9.3", "3.0"], indirect=True)
def test_a_slow_announce_chain_fits_the_default_flush(runtime: ar.Runtime) -> None:
    """The longest chain (report → NotFound → list_services → Prewarm → report) at 0.6 s a call
    with a 1 s deadline: 2.4 s, longer than the old flush (timeout + 1 = 2 s), within the default
    one (4 × timeout + 1 = 5 s). Sent before the process ends."""
    from prewarm_client.errors import NotFoundError  # noqa: PLC0415

    class SlowServer(RecordingClient):
        announced = False

        def _record(self, method: str, *args: Any) -> None:
            time.sleep(0.6)
            super()._record(method, *args)
            if method == "prewarm":
                self.announced = True
            elif method == "report" and not self.announced:
                raise NotFoundError("run 'etl/manual__1' is not active")

    client = SlowServer()
    provider(runtime, client)
    extra = {"timeout": 1, "service_pattern": "{task_id}"}
    if runtime.major == 2:
        runtime.add_connection("prewarm_default", host="127.0.0.1", port=1, extra=extra)
    else:
        from prewarm_client.airflow._compat import Connection  # noqa: PLC0415
        runtime.supervisor_connections["prewarm_default"] = Connection(
            "prewarm_default", "prewarm", host="127.0.0.1", port=1, extra=extra)
    dag = chain_dag()
    runtime.add_run(dag, "manual__1")
    at_exit: list[list[str]] = []
    after = lambda: at_exit.append([c[0] for c in client.calls])  # noqa: E731
    run = ar.task_process_2x if runtime.major == 2 else ar.task_process_3x
    run(runtime, dag, "manual__1", "a", "success", after=after)
    assert at_exit[0] == ["report", "list_services", "prewarm", "report", "report"]


def test_reporter_survives_a_fork_after_using_grpc(shared_prewarmd: harness.Prewarmd) -> None:
    """gRPC's C core does not survive a fork with a channel open (Airflow 3's LocalExecutor
    forks its workers from the scheduler, whose listener has sent already). The reporter closes
    its channel around the fork: the parent goes on, and the child reports on its own."""
    _forget_provider()
    reporter_module = importlib.import_module("prewarm_client.airflow.reporter")
    target = f"127.0.0.1:{shared_prewarmd.grpc_port}"
    reporter = reporter_module.Reporter(lambda: PrewarmClient(target, timeout=5))
    seen: list[int] = []
    reporter.submit(lambda c: seen.append(len(c.list_services())), "list")
    assert reporter.flush(10) and seen
    sent, failed = reporter.sent, reporter.failed
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = reporter.submit(lambda c: c.list_services(), "child list") and reporter.flush(10)
        os._exit(0 if ok and reporter.sent == sent + 1 and reporter.failed == failed else 3)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on gRPC")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    reporter.submit(lambda c: seen.append(len(c.list_services())), "list again")
    assert reporter.flush(10) and len(seen) == 2 and reporter.failed == 0
    reporter.close()


# Duration hints from Airflow's history ------------------------------------------------------

# Past durations in whole minutes: Airflow 3's SQLite branch of duration_expression_update (3.1
# models/taskinstance.py:2142-2151) adds the seconds-of-minute difference twice (a 9.7 s try
# 10:00:10.5 → 10:00:20.2 is stored as 19.7 s); with whole minutes it is exact, as its PostgreSQL
# and MySQL branches always are.
OLD = {"a": 3000.0, "b": 3000.0}                      # outside the last `history_runs` runs
RECENT = [{"a": 60.0, "b": 180.0}, {"a": 120.0, "b": 180.0}, {"a": 600.0, "b": 240.0}]


class Queries:
    """Every ORM statement run on the runtime's sessions: (thread name, session, SQL)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def __call__(self, state: Any) -> None:
        self.seen.append((threading.current_thread().name, id(state.session),
                          str(state.statement)))

    def history_reads(self) -> list[tuple[str, int, str]]:
        """The listener's history read: the latest runs, then their durations."""
        return [q for q in self.seen if "task_instance.duration IS NOT NULL" in q[2]
                or "ORDER BY dag_run.id DESC" in q[2]]

    def __enter__(self) -> "Queries":
        import sqlalchemy  # noqa: PLC0415
        sqlalchemy.event.listen(ar.orm.Session, "do_orm_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        import sqlalchemy  # noqa: PLC0415
        sqlalchemy.event.remove(ar.orm.Session, "do_orm_execute", self)


def with_history(rt: ar.Runtime, **extra: Any) -> ar.Dag:
    rt.add_connection("prewarm_default", host="127.0.0.1", port=50051,
                      extra={**CONN_EXTRA, "history_runs": 3, **extra})
    dag = chain_dag()
    end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=1)
    for i, durations in enumerate([OLD, OLD] + RECENT):
        rt.add_finished_run(dag, f"scheduled__past-{i}", durations,
                            end + dt.timedelta(hours=i))
    return dag


def hints_of(announce: tuple[Any, ...]) -> dict[str, float]:
    return {t["task_id"]: t["expected_duration"] for t in announce[3] if "expected_duration" in t}


@pytest.mark.parametrize("runtime", ar.VERSIONS, indirect=True)
def test_history_hints_are_read_by_the_reporter_in_its_own_session(runtime: ar.Runtime) -> None:
    """The scheduler announces a run: the reporter's thread (never the scheduler's) reads the
    DAG's last `history_runs` runs in a session of its own, and the announcement carries each
    task's median duration (c never succeeded: no hint). The older, slower runs do not count."""
    client = RecordingClient()
    listener = provider(runtime, client)
    dag = with_history(runtime)
    # Stored as this version of Airflow stores it.
    assert runtime.durations_stored("etl")[("scheduled__past-4", "a")] == 600.0
    runtime.add_run(dag, "manual__1")
    with Queries() as queries:
        ar.Scheduler(runtime).start_run(dag, "manual__1")
        scheduler_sessions = {s for t, s, _ in queries.seen if t == "MainThread"}
        assert listener.get_listener().flush(timeout=10)
    assert runtime.run_row("etl", "manual__1").state == "running"  # committed, undisturbed
    (announce,) = client.of("prewarm")
    assert hints_of(announce) == {"a": 120.0, "b": 180.0}
    reads = queries.history_reads()
    assert len(reads) == 2, reads  # the latest runs (LIMIT 3), then their task instances
    assert {t for t, _, _ in reads} == {"prewarm-prewarm_default"}
    assert not {s for _, s, _ in reads} & scheduler_sessions
    assert "LIMIT" in reads[0][2]


@pytest.mark.parametrize("runtime", ["2.7.0", "2.10.3", "3.1", "main-2026-spec"], indirect=True)
def test_history_is_read_once_per_ttl(runtime: ar.Runtime) -> None:
    client = RecordingClient()
    listener = provider(runtime, client)
    dag = with_history(runtime)
    scheduler = ar.Scheduler(runtime)
    with Queries() as queries:
        for run in ("manual__1", "manual__2"):
            runtime.add_run(dag, run)
            scheduler.start_run(dag, run)
            assert listener.get_listener().flush(timeout=10)
    assert [hints_of(a) for a in client.of("prewarm")] == [{"a": 120.0, "b": 180.0}] * 2
    assert len(queries.history_reads()) == 2  # one read (two statements) for both runs
    assert listener.get_listener().duration_hints.reads == 1


@pytest.mark.parametrize("runtime", ["2.7.0", "2.10.3", "3.1", "main-2026-spec"], indirect=True)
def test_a_failing_history_read_announces_without_hints(
        runtime: ar.Runtime, caplog: pytest.LogCaptureFixture) -> None:
    """The metadata database fails the read (here: a schema without the column): the run is
    still announced, without hints; the scheduler is untouched and nothing counts as a failed
    report."""
    import logging  # noqa: PLC0415
    client = RecordingClient()
    listener = provider(runtime, client)
    dag = with_history(runtime)
    runtime.add_run(dag, "manual__1")
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE task_instance RENAME COLUMN duration TO gone")
    with caplog.at_level(logging.WARNING, logger="prewarm_client.airflow"):
        ar.Scheduler(runtime).start_run(dag, "manual__1")
        assert listener.get_listener().flush(timeout=10)
    assert runtime.run_row("etl", "manual__1").state == "running"
    (announce,) = client.of("prewarm")
    assert announce[1] == "etl/manual__1" and hints_of(announce) == {}
    assert "cannot read the task durations of DAG etl" in caplog.text
    hints = listener.get_listener().duration_hints
    assert hints.failures == 1
    reporter = listener.get_listener().reporter()
    assert reporter.failed == 0 and reporter.sent >= 1


@pytest.mark.parametrize("runtime", ["2.7.0", "2.10.3", "3.0", "3.1"], indirect=True)
def test_a_task_process_announces_without_reading_history(runtime: ar.Runtime) -> None:
    """The scheduler's announcement did not arrive: the task announces the run itself, without
    hints. 2.x: its budget belongs to its own reports; 3.x: no metastore in a task process."""
    from prewarm_client.errors import NotFoundError  # noqa: PLC0415

    class NotAnnounced(RecordingClient):
        def report(self, *args: Any, **kwargs: Any) -> Any:
            super().report(*args, **kwargs)
            if not self.of("prewarm"):
                raise NotFoundError("run 'etl/manual__1' is not active")

    client = NotAnnounced()
    provider(runtime, client)
    dag = with_history(runtime)
    if runtime.major >= 3:
        store_connection(runtime, "supervisor")
    runtime.add_run(dag, "manual__1")
    with Queries() as queries:
        if runtime.major == 2:
            ar.task_process_2x(runtime, dag, "manual__1", "a", "success")
        else:
            ar.task_process_3x(runtime, dag, "manual__1", "a", "success")
    (announce,) = client.of("prewarm")
    assert hints_of(announce) == {}
    assert queries.history_reads() == []
    assert reports(client)[-1] == ("a", "finished")


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_history_queries_are_bounded_and_time_limited_per_database(dialect: str) -> None:
    """The two history statements as each database Airflow supports receives them (compiled
    with SQLAlchemy's own dialects; no PostgreSQL or MySQL server runs here): a LIMIT on the
    runs, and the connection's timeout as PostgreSQL's SET LOCAL statement_timeout (this
    transaction only) or MySQL's MAX_EXECUTION_TIME hint."""
    import importlib  # noqa: PLC0415
    from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: PLC0415
    _forget_provider()
    compat = importlib.import_module("prewarm_client.airflow._compat")
    engine_dialect = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}[dialect].dialect()

    def sql(statement: Any) -> str:
        return str(statement.compile(dialect=engine_dialect,
                                     compile_kwargs={"literal_binds": True}))

    runs = sql(compat.recent_runs_query(ar.DagRun, "etl", 20, 2000))
    durations = sql(compat.durations_query(ar.TaskInstance, "etl", ["r1", "r2"], 2000))
    assert "LIMIT 20" in runs and "ORDER BY dag_run.id DESC" in runs
    assert "dag_run.state IN ('success', 'failed')" in runs
    assert "task_instance.run_id IN ('r1', 'r2')" in durations
    assert "task_instance.map_index <= 0" in durations
    setup = compat.statement_timeout_sql(dialect, 2000)
    hint = "/*+ MAX_EXECUTION_TIME(2000) */"
    if dialect == "postgresql":
        assert str(setup) == "SET LOCAL statement_timeout = 2000"
    else:
        assert setup is None
    for statement in (runs, durations):
        assert statement.startswith(f"SELECT {hint}") == (dialect == "mysql"), statement
