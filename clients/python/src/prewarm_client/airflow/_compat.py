"""Airflow imports, guarded: the provider imports (and its tests run) without Airflow installed.

Each name resolves to Airflow's own object when Airflow is importable (3.x locations first, then
2.x), else to a small stand-in with the same shape:

- BaseHook: airflow.sdk.BaseHook (3.x) / airflow.hooks.base.BaseHook (2.x); the stand-in reads
  connections from AIRFLOW_CONN_<CONN_ID> environment variables (URI or JSON), as Airflow's
  environment-variable secrets backend does.
- BaseOperator: airflow.sdk.BaseOperator (3.x) / airflow.models.baseoperator.BaseOperator (2.x).
- AirflowPlugin: airflow.plugins_manager.AirflowPlugin.
- hookimpl: airflow.listeners.hookimpl, else pluggy.HookimplMarker("airflow") (the same marker:
  it tags functions `airflow_impl`, which is what Airflow's pluggy PluginManager looks for).
- conf_get: airflow.configuration.conf, else the AIRFLOW__SECTION__KEY environment variable.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("prewarm_client.airflow")


def _try_import(module: str, name: str) -> Any:
    try:
        mod = __import__(module, fromlist=[name])
        return getattr(mod, name)
    except Exception:  # ImportError, or a broken/partial Airflow: fall back.
        return None


AIRFLOW_VERSION: Optional[str] = _try_import("airflow", "__version__")


def _major(version: Optional[str]) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


AIRFLOW_3: bool = _major(AIRFLOW_VERSION) >= 3


# --------------------------------------------------------------------------------------------
# Connections (stand-in)


class Connection:
    """The fields of airflow.models.Connection that the provider reads."""

    def __init__(self, conn_id: str = "", conn_type: str = "", host: Optional[str] = None,
                 port: Optional[int] = None, login: Optional[str] = None,
                 password: Optional[str] = None, schema: Optional[str] = None,
                 extra: Any = None, description: str = "") -> None:
        self.conn_id, self.conn_type, self.description = conn_id, conn_type, description
        self.host, self.port, self.login, self.password, self.schema = (
            host, int(port) if port not in (None, "") else None, login, password, schema)
        self.extra = extra if isinstance(extra, str) or extra is None else json.dumps(extra)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        if not self.extra:
            return {}
        try:
            value = json.loads(self.extra)
        except ValueError:
            log.warning("connection %s: extra is not valid JSON; ignored", self.conn_id)
            return {}
        return value if isinstance(value, dict) else {}

    @classmethod
    def from_uri(cls, conn_id: str, uri: str) -> "Connection":
        """Airflow's URI form: prewarm://login:password@host:port/schema?key=value&...
        (`__extra__` holds a JSON object of extras)."""
        parts = urlsplit(uri)
        extra: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "__extra__":
                extra.update(json.loads(value))
            else:
                extra[key] = value
        return cls(conn_id=conn_id, conn_type=parts.scheme.replace("-", "_"),
                   host=unquote(parts.hostname or "") or None, port=parts.port,
                   login=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   schema=unquote(parts.path.lstrip("/")) or None, extra=extra or None)


def connection_from_env(conn_id: str) -> Connection:
    """AIRFLOW_CONN_<CONN_ID> as a URI or a JSON object; LookupError when unset."""
    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not value:
        raise LookupError(f"The conn_id `{conn_id}` isn't defined")
    value = value.strip()
    if value.startswith("{"):
        data = json.loads(value)
        return Connection(conn_id=conn_id, conn_type=data.get("conn_type", ""),
                          host=data.get("host"), port=data.get("port"), login=data.get("login"),
                          password=data.get("password"), schema=data.get("schema"),
                          extra=data.get("extra"), description=data.get("description", ""))
    return Connection.from_uri(conn_id, value)


class _StandInBaseHook:
    """Shape of Airflow's BaseHook: get_connection(conn_id) and a logger."""

    def __init__(self, logger_name: Optional[str] = None) -> None:
        self._log = logging.getLogger(logger_name or f"{type(self).__module__}.{type(self).__name__}")

    @property
    def log(self) -> logging.Logger:
        return self._log

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        return connection_from_env(conn_id)


class _StandInBaseOperator:
    """Shape of Airflow's BaseOperator for what the provider's operator needs."""

    template_fields: tuple[str, ...] = ()

    def __init__(self, *, task_id: str, **kwargs: Any) -> None:
        self.task_id = task_id
        self.params = kwargs.pop("params", None) or {}
        self.upstream_task_ids: set[str] = set()
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.log = logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")


class _StandInAirflowPlugin:
    name: Optional[str] = None
    listeners: list[Any] = []


def _identity_hookimpl() -> Callable[..., Any]:
    try:
        import pluggy  # noqa: PLC0415 - Airflow's listener machinery is pluggy
        return pluggy.HookimplMarker("airflow")
    except ImportError:  # pragma: no cover - pytest (and Airflow) bring pluggy
        def hookimpl(function: Any = None, **_: Any) -> Any:
            if function is None:
                return lambda f: f
            setattr(function, "airflow_impl", {})
            return function
        return hookimpl


BaseHook: Any = (_try_import("airflow.sdk", "BaseHook")
                 or _try_import("airflow.hooks.base", "BaseHook") or _StandInBaseHook)
BaseOperator: Any = (_try_import("airflow.sdk", "BaseOperator")
                     or _try_import("airflow.models.baseoperator", "BaseOperator")
                     or _StandInBaseOperator)
AirflowPlugin: Any = _try_import("airflow.plugins_manager", "AirflowPlugin") or _StandInAirflowPlugin
hookimpl: Any = _try_import("airflow.listeners", "hookimpl") or _identity_hookimpl()


def conf_get(section: str, key: str, fallback: Optional[str] = None) -> Optional[str]:
    """[section] key from Airflow's configuration (which also reads AIRFLOW__SECTION__KEY), or
    from that environment variable when Airflow is not installed."""
    conf = _try_import("airflow.configuration", "conf")
    if conf is not None:
        try:
            return conf.get(section, key, fallback=fallback)
        except Exception:
            return fallback
    return os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}", fallback)


def is_runtime_task_instance(ti: Any) -> bool:
    """A 3.x task SDK RuntimeTaskInstance (task-sdk execution_time/task_runner.py): only a task
    process has one."""
    return any(c.__name__ == "RuntimeTaskInstance" for c in type(ti).__mro__)


def read_connection(conn_id: str, sdk: bool = False) -> Any:
    """The connection `conn_id`, for the listener. Never call it on a thread that holds an
    Airflow session (the scheduler's loop, a 2.x task's run): the metastore lookup uses the
    thread's scoped session, expunges everything in it and commits it.

    AIRFLOW_CONN_<ID> first (no Airflow call at all); then with `sdk` (a 3.x task process) the task
    SDK's BaseHook, which asks the supervisor; else Airflow's secrets backends in order
    (Connection.get_connection_from_secrets: env, custom, metastore); else 2.x BaseHook."""
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
        return connection_from_env(conn_id)
    if sdk:
        sdk_hook = _try_import("airflow.sdk", "BaseHook")
        if sdk_hook is not None:
            return sdk_hook.get_connection(conn_id)
    connection_cls = _try_import("airflow.models.connection", "Connection")
    from_secrets = getattr(connection_cls, "get_connection_from_secrets", None)
    if callable(from_secrets):
        return from_secrets(conn_id)
    base_hook = _try_import("airflow.hooks.base", "BaseHook")
    if base_hook is not None:
        return base_hook.get_connection(conn_id)
    return connection_from_env(conn_id)


def task_instance_states(dag_id: str, run_id: str) -> list[tuple[Any, Any, Any, Any]]:
    """(task_id, map_index, state, end_date) of a DAG run's task instances, read in a session of
    the calling thread (airflow.utils.session.create_session: Airflow's scoped session is per
    thread, so on the reporter's thread this is never the scheduler's). Raises when Airflow's ORM
    is not importable."""
    from sqlalchemy import select  # noqa: PLC0415 - Airflow brings SQLAlchemy
    ti = __import__("airflow.models.taskinstance", fromlist=["TaskInstance"]).TaskInstance
    create_session = __import__("airflow.utils.session", fromlist=["create_session"]).create_session
    query = select(ti.task_id, ti.map_index, ti.state, ti.end_date).where(
        ti.dag_id == dag_id, ti.run_id == run_id)
    with create_session() as session:
        return [tuple(row) for row in session.execute(query)]


def recent_task_durations(dag_id: str, runs: int, timeout: float) -> list[tuple[str, float]]:
    """(task_id, duration in seconds) of the successful task instances of the DAG's `runs` most
    recently created finished runs (state success or failed, the highest dag_run.id), read in a
    session of the calling thread like task_instance_states (never the scheduler's). TaskInstance.duration is the column Airflow
    sets when a try ends: end_date - start_date of that try (2.x TaskInstance.set_duration,
    2.7.0 models/taskinstance.py:2430-2435; 3.x the execution API's duration_expression_update,
    3.1 models/taskinstance.py:2136-2168), on 2.7 through 3.x alike. Mapped tasks count with
    their first instance (map_index 0), as the listener reports them.

    Bounded: two indexed queries (dag_run by dag_id with LIMIT `runs`; task_instance by dag_id
    and run_id), each stopped by the database after `timeout` seconds on PostgreSQL
    (SET LOCAL statement_timeout, this transaction only) and MySQL (MAX_EXECUTION_TIME hint);
    SQLite is a local file. Raises when Airflow's ORM is not importable or the database fails."""
    ti = __import__("airflow.models.taskinstance", fromlist=["TaskInstance"]).TaskInstance
    dag_run = __import__("airflow.models.dagrun", fromlist=["DagRun"]).DagRun
    create_session = __import__("airflow.utils.session", fromlist=["create_session"]).create_session
    millis = max(1, int(timeout * 1000))
    with create_session() as session:
        setup = statement_timeout_sql(session.get_bind().dialect.name, millis)
        if setup is not None:
            session.execute(setup)
        run_ids = [row[0] for row in
                   session.execute(recent_runs_query(dag_run, dag_id, runs, millis))]
        if not run_ids:
            return []
        return [(str(task_id), float(duration)) for task_id, duration in
                session.execute(durations_query(ti, dag_id, run_ids, millis))]


def statement_timeout_sql(dialect: str, millis: int) -> Any:
    """PostgreSQL: SET LOCAL statement_timeout for the rest of this transaction only (the pooled
    connection keeps its own setting afterwards); None elsewhere."""
    if dialect != "postgresql":
        return None
    from sqlalchemy import text  # noqa: PLC0415
    return text(f"SET LOCAL statement_timeout = {int(millis)}")


def _mysql_timeout(query: Any, millis: int) -> Any:
    # An optimizer hint: MySQL stops the SELECT after `millis` ms; rendered for MySQL only.
    return query.prefix_with(f"/*+ MAX_EXECUTION_TIME({int(millis)}) */", dialect="mysql")


def recent_runs_query(dag_run: Any, dag_id: str, runs: int, millis: int) -> Any:
    """run_id of the DAG's `runs` most recently created finished runs (dag_run's dag_id index)."""
    from sqlalchemy import select  # noqa: PLC0415 - Airflow brings SQLAlchemy
    return _mysql_timeout(
        select(dag_run.run_id)
        .where(dag_run.dag_id == dag_id, dag_run.state.in_(("success", "failed")))
        .order_by(dag_run.id.desc()).limit(runs), millis)


def durations_query(ti: Any, dag_id: str, run_ids: list[str], millis: int) -> Any:
    """(task_id, duration) of those runs' successful task instances (map index -1 or 0)."""
    from sqlalchemy import select  # noqa: PLC0415
    return _mysql_timeout(
        select(ti.task_id, ti.duration).where(
            ti.dag_id == dag_id, ti.run_id.in_(run_ids), ti.state == "success",
            ti.duration.isnot(None), ti.map_index <= 0), millis)


class _Interval(NamedTuple):
    start: Any
    end: Any


class _Restriction(NamedTuple):
    earliest: Any
    latest: Any
    catchup: bool


def data_interval(start: Any, end: Any) -> Any:
    """airflow.timetables.base.DataInterval(start, end)."""
    cls = _try_import("airflow.timetables.base", "DataInterval") or _Interval
    return cls(start, end)


def time_restriction(dag: Any) -> Any:
    """The DAG's scheduling restriction: DAG._time_restriction where the DAG has it (2.x), else
    TimeRestriction(start_date, end_date, catchup) as the DAG builds it."""
    restriction = getattr(dag, "_time_restriction", None)
    if restriction is not None:
        return restriction
    cls = _try_import("airflow.timetables.base", "TimeRestriction") or _Restriction
    return cls(getattr(dag, "start_date", None), getattr(dag, "end_date", None),
               bool(getattr(dag, "catchup", False)))


def scheduled_run_id(timetable: Any, info: Any) -> Optional[str]:
    """The id the scheduler gives the scheduled run `info` (a DagRunInfo): the timetable's own
    generate_run_id, 2.x with logical_date, 3.x with run_after (timetables/base.py)."""
    run_type = _try_import("airflow.utils.types", "DagRunType")
    if run_type is None:
        return None
    import inspect  # noqa: PLC0415
    params = inspect.signature(timetable.generate_run_id).parameters
    if "run_after" in params:
        return str(timetable.generate_run_id(run_type=run_type.SCHEDULED,
                                             run_after=info.run_after,
                                             data_interval=info.data_interval))
    return str(timetable.generate_run_id(run_type=run_type.SCHEDULED,
                                         logical_date=info.logical_date,
                                         data_interval=info.data_interval))
