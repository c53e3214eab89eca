"""Apache Airflow's own code, loaded from its source, driving the listener the way Airflow does.

Airflow cannot be installed here, so the tests load the parts of its real source that a listener
meets (`../shared/airflow-src/<version>`, or $PREWARM_AIRFLOW_SRC) into `sys.modules`:

| real Airflow code | from |
|---|---|
| ListenerManager, get_listener_manager | airflow/listeners/listener.py |
| the hook specs of the version | airflow/listeners/spec/*.py |
| create_session, provide_session | airflow/utils/session.py |
| CommitProhibitorGuard, prohibit_commit | airflow/utils/sqlalchemy.py (the class and function, extracted: the module's other imports are heavy) |
| MetastoreBackend | airflow/secrets/metastore.py |
| DagRun.notify_dagrun_state_changed | airflow/models/dagrun.py (the method, extracted) |
| DagRunType, Timetable base (generate_run_id), DataInterval, TimeRestriction, DagRunInfo | airflow/utils/types.py, airflow/timetables/base.py |
| how a finished try's duration is stored: TaskInstance.set_duration (2.x) / duration_expression_update (3.x, the execution API's SQL) | airflow/models/taskinstance.py (extracted) |

Around it, a small ORM with Airflow's session configuration (settings.configure_orm:
autoflush=False, expire_on_commit=False, a thread-scoped `settings.Session`) on a real SQLite file,
and the processes that call the hooks, each reproducing what Airflow does and citing where:
`Scheduler` (the scheduling loop's guarded session), `task_process_2x` / `task_process_3x` (hook
order, per-version attributes, os._exit), `api_server_mark` (3.x API marking a run or task).
Only `session.py`, `sqlalchemy.py` and `metastore.py` of 2.7.0, 2.10.3 and 3.0 are in the source
subset; other versions use the nearest of those (the code is the same in all of them).
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import json
import logging
import os
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy import orm

# airflow.utils.state's enums (str enums; the same values in every version here).
from airflow_fakes import DagRunState, TaskInstanceState  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[3]
VERSIONS = ("2.7.0", "2.7.3", "2.8.0", "2.8.4", "2.9.0", "2.9.3", "2.10.0", "2.10.3", "3.0", "3.1",
            "main-2025-12", "main-2026-spec")


def source_root() -> Optional[Path]:
    for candidate in (os.environ.get("PREWARM_AIRFLOW_SRC"), REPO.parent / "shared" / "airflow-src"):
        if candidate and (Path(candidate) / "2.7.0").is_dir():
            return Path(candidate)
    return None


def missing_reason() -> str:
    return ("Airflow's source is not here: expected ../shared/airflow-src/<version> beside the "
            "repository, or PREWARM_AIRFLOW_SRC pointing at a tree of that layout")


def _major_minor(version: str) -> tuple[int, int]:
    if version.startswith("main"):
        return (3, 2)
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _tree(version: str) -> Path:
    root = source_root()
    assert root is not None, missing_reason()
    base = root / version
    return base / "airflow-core" / "src" / "airflow" if (base / "airflow-core").is_dir() \
        else base / "airflow"


def _nearest_with(version: str, relative: str) -> Path:
    """The file from `version`, else from the nearest version that has it (see module doc;
    main-2026-spec holds only the files that differ from main-2025-12)."""
    own = _tree(version) / relative
    if own.is_file():
        return own
    if version == "main-2026-spec" and (_tree("main-2025-12") / relative).is_file():
        return _tree("main-2025-12") / relative
    mm = _major_minor(version)
    fallback = "3.0" if mm[0] >= 3 else ("2.7.0" if mm < (2, 8) else "2.10.3")
    return _tree(fallback) / relative


# --------------------------------------------------------------------------------------------
# Loading real modules


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _package(name: str) -> types.ModuleType:
    return _module(name, __path__=[])


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _extract(path: Path, names: Sequence[str], namespace: dict[str, Any],
             within: Optional[str] = None) -> dict[str, Any]:
    """Executes the top-level classes / functions `names` of `path` (or the methods `names` of
    class `within`) in `namespace`: Airflow's own code without the rest of its module."""
    tree = ast.parse(path.read_text())
    body = tree.body
    if within is not None:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == within).body
    lines = path.read_text().splitlines()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            code = textwrap.dedent("\n".join(lines[start:node.end_lineno]))
            exec(compile(code, f"{path}:{start + 1}", "exec"), namespace)  # noqa: S102
    return namespace


# --------------------------------------------------------------------------------------------
# The metadata database: Airflow's tables, reduced to the columns the listener's paths touch


class Base(orm.declarative_base()):  # type: ignore[misc]
    __abstract__ = True


class DagRun(Base):
    """airflow.models.dagrun.DagRun: the columns and the methods a listener reaches."""

    __tablename__ = "dag_run"
    id = sa.Column(sa.Integer, primary_key=True)
    dag_id = sa.Column(sa.String(250), nullable=False)
    run_id = sa.Column(sa.String(250), nullable=False)
    run_type = sa.Column(sa.String(50), nullable=False)
    state = sa.Column(sa.String(50))
    start_date = sa.Column(sa.DateTime(timezone=True))
    end_date = sa.Column(sa.DateTime(timezone=True))
    data_interval_start = sa.Column(sa.DateTime(timezone=True))
    data_interval_end = sa.Column(sa.DateTime(timezone=True))

    # Set by the scheduler before it works on the run (scheduler_job_runner._schedule_dag_run:
    # `dag_run.dag = self.dagbag.get_dag(...)`): a plain attribute, not a column.
    dag: Any = None

    def get_task_instances(self, state: Any = None, session: Any = None) -> list[Any]:
        """dagrun.py get_task_instances: @provide_session, a query on the session it is given
        (wrapped with Airflow's real provide_session when the runtime is installed)."""
        query = session.query(TaskInstance).filter(TaskInstance.dag_id == self.dag_id,
                                                   TaskInstance.run_id == self.run_id)
        return query.all()


class TaskInstance(Base):
    """airflow.models.taskinstance.TaskInstance (2.x ORM; the 3.x scheduler and API server's)."""

    __tablename__ = "task_instance"
    dag_id = sa.Column(sa.String(250), primary_key=True)
    task_id = sa.Column(sa.String(250), primary_key=True)
    run_id = sa.Column(sa.String(250), primary_key=True)
    map_index = sa.Column(sa.Integer, primary_key=True, default=-1)
    state = sa.Column(sa.String(20))
    try_number = sa.Column(sa.Integer, default=0)
    max_tries = sa.Column(sa.Integer, default=0)
    start_date = sa.Column(sa.DateTime(timezone=True))
    end_date = sa.Column(sa.DateTime(timezone=True))
    duration = sa.Column(sa.Float)

    task: Any = None  # the operator, set by the task runner (not a column)
    log = logging.getLogger("airflow.task")

    def is_eligible_to_retry(self) -> bool:
        """2.7.0 models/taskinstance.py:2022-2032, the rule handle_failure applies (the
        RESTARTING branch left out: no test clears a running task)."""
        if not getattr(self, "task", None):
            return self.try_number <= self.max_tries
        return bool(self.task.retries and self.try_number <= self.max_tries)


class Connection(Base):
    """airflow.models.connection.Connection: the columns MetastoreBackend selects."""

    __tablename__ = "connection"
    id = sa.Column(sa.Integer, primary_key=True)
    conn_id = sa.Column(sa.String(250), unique=True, nullable=False)
    conn_type = sa.Column(sa.String(500), nullable=False)
    host = sa.Column(sa.String(500))
    port = sa.Column(sa.Integer)
    login = sa.Column(sa.String(500))
    password = sa.Column(sa.String(5000))
    schema = sa.Column(sa.String(500))
    extra = sa.Column(sa.Text)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return json.loads(self.extra) if self.extra else {}

    def get_uri(self) -> str:
        return f"{self.conn_type}://{self.host}:{self.port}"

    @classmethod
    def get_connection_from_secrets(cls, conn_id: str) -> Any:
        """The lookup: iterate the secrets backends (environment variables, then the
        metastore), log and skip a backend that raises, raise AirflowNotFoundException at the
        end (2.7.0 models/connection.py:448-477; the same in 2.10 and 3.x). The metastore
        backend is Airflow's real MetastoreBackend."""
        value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        if value:
            from prewarm_client.airflow._compat import connection_from_env  # noqa: PLC0415
            return connection_from_env(conn_id)
        backend = sys.modules["airflow.secrets.metastore"].MetastoreBackend()
        try:
            conn = backend.get_connection(conn_id=conn_id)
            if conn:
                return conn
        except Exception:
            logging.getLogger("airflow.models.connection").exception(
                "Unable to retrieve connection from secrets backend (MetastoreBackend). "
                "Checking subsequent secrets backend.")
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")


class AirflowNotFoundException(Exception):
    """airflow.exceptions.AirflowNotFoundException."""


class TaskCommandMarker:
    """airflow/cli/commands/task_command.py TaskCommandMarker (2.x): on_starting's component in a
    task process."""


class TaskRunnerMarker:
    """task-sdk execution_time/task_runner.py TaskRunnerMarker (3.x)."""


class Job:
    """airflow/jobs/job.py Job: calls on_starting(component=self) in __init__, before job_type is
    set (2.7.0 job.py:100-112)."""

    job_type: Optional[str] = None


# --------------------------------------------------------------------------------------------
# The installed runtime


class Runtime:
    """One Airflow version's real code in sys.modules, a metadata DB, and its processes."""

    def __init__(self, version: str, db_path: Path) -> None:
        self.version = version
        self.major_minor = _major_minor(version)
        self.major = self.major_minor[0]
        self.engine = sa.create_engine(f"sqlite:///{db_path}",
                                       connect_args={"check_same_thread": False})
        Base.metadata.create_all(self.engine)
        # settings.configure_orm (2.7.0 airflow/settings.py): one scoped_session per thread.
        self.Session = orm.scoped_session(orm.sessionmaker(
            autocommit=False, autoflush=False, bind=self.engine, expire_on_commit=False))
        self.plugins: list[Any] = []
        self.scheduler_errors: list[BaseException] = []
        self._install()

    # sys.modules -----------------------------------------------------------------------------

    def _install(self) -> None:
        tree = _tree(self.version)
        version_text = (tree / "__init__.py").read_text()
        match = re.search(r'__version__ = "([^"]+)"', version_text)
        runtime = self
        stubs = {
            "airflow": _module("airflow", __path__=[],
                               __version__=match.group(1) if match else self.version),
            "airflow.settings": _module("airflow.settings", Session=self.Session,
                                        SASession=orm.Session, TracebackSession=object,
                                        TracebackSessionForTests=object),
            "airflow.typing_compat": _module("airflow.typing_compat",
                                             ParamSpec=__import__("typing").ParamSpec,
                                             TypedDict=__import__("typing").TypedDict,
                                             Protocol=__import__("typing").Protocol,
                                             runtime_checkable=__import__("typing")
                                             .runtime_checkable),
            "airflow.exceptions": _module("airflow.exceptions",
                                          AirflowNotFoundException=AirflowNotFoundException,
                                          RemovedInAirflow3Warning=DeprecationWarning),
            "airflow.plugins_manager": _module(
                "airflow.plugins_manager", AirflowPlugin=AirflowPlugin,
                integrate_listener_plugins=lambda lm: runtime._integrate(lm)),
            "airflow.listeners.spec": _package("airflow.listeners.spec"),
            "airflow.utils": _package("airflow.utils"),
            "airflow.models": _package("airflow.models"),
            "airflow.secrets": _module("airflow.secrets", __path__=[],
                                       BaseSecretsBackend=object),
            "airflow.api_internal": _package("airflow.api_internal"),
            "airflow.api_internal.internal_api_call": _module(
                "airflow.api_internal.internal_api_call",
                # 2.10: no internal API (AIP-44) configured, so direct database access.
                internal_api_call=lambda f: f,
                InternalApiConfig=types.SimpleNamespace(get_use_internal_api=lambda: False)),
            "airflow.utils.deprecation_tools": _module(
                "airflow.utils.deprecation_tools", add_deprecated_classes=lambda *a, **k: None),
            "airflow.datasets": _module("airflow.datasets", BaseDataset=object),
            "airflow.sdk.bases": _package("airflow.sdk.bases"),
            "airflow.sdk.bases.timetable": _module("airflow.sdk.bases.timetable",
                                                   NullAsset=object),
            "airflow.timetables": _package("airflow.timetables"),
            "airflow.utils.state": _module("airflow.utils.state", DagRunState=DagRunState,
                                           TaskInstanceState=TaskInstanceState),
            "airflow.models.taskinstance": _module("airflow.models.taskinstance",
                                                   TaskInstance=TaskInstance),
            "pendulum": _module("pendulum", DateTime=dt.datetime),
            "airflow.sdk": _package("airflow.sdk"),
            "airflow.sdk.definitions": _package("airflow.sdk.definitions"),
            "airflow.sdk.definitions._internal": _package("airflow.sdk.definitions._internal"),
            "airflow.sdk.definitions._internal.types": _module(
                "airflow.sdk.definitions._internal.types", ArgNotSet=object, NOTSET=object()),
            "airflow.sdk.definitions.asset": _module(
                "airflow.sdk.definitions.asset", AssetUniqueKey=object, BaseAsset=object),
        }
        uninstall()
        sys.modules.update(stubs)
        for name, module in stubs.items():  # `import a.b.c` then `a.b.c.x` needs the attributes
            parent, _, child = name.rpartition(".")
            if parent in stubs:
                setattr(stubs[parent], child, module)
        listeners_pkg = _load("airflow.listeners", tree / "listeners" / "__init__.py")
        listeners_pkg.__path__ = []  # type: ignore[attr-defined]
        for spec in sorted((tree / "listeners" / "spec").glob("*.py")):
            if spec.stem != "__init__":
                _load(f"airflow.listeners.spec.{spec.stem}", spec)
        self.listener_module = _load("airflow.listeners.listener",
                                     tree / "listeners" / "listener.py")
        self.session_module = _load("airflow.utils.session",
                                    _nearest_with(self.version, "utils/session.py"))
        guard = _extract(_nearest_with(self.version, "utils/sqlalchemy.py"),
                         ["CommitProhibitorGuard", "prohibit_commit"],
                         {"event": sa.event, "Session": orm.Session, "Self": Any,
                          "__name__": "airflow.utils.sqlalchemy"})
        sys.modules["airflow.utils.sqlalchemy"] = _module("airflow.utils.sqlalchemy", **guard)
        self.prohibit_commit = guard["prohibit_commit"]
        self.types_module = _load("airflow.utils.types",
                                  _nearest_with(self.version, "utils/types.py"))
        self.timetables = _load("airflow.timetables.base",
                                _nearest_with(self.version, "timetables/base.py"))
        sys.modules["airflow.models.connection"] = _module(
            "airflow.models.connection", Connection=Connection)
        sys.modules["airflow.models"].Connection = Connection  # type: ignore[attr-defined]
        self.metastore = _load("airflow.secrets.metastore",
                               _nearest_with(self.version, "secrets/metastore.py"))
        # DagRun's listener call, Airflow's own method of this version.
        notify = _extract(_nearest_with(self.version, "models/dagrun.py"),
                          ["notify_dagrun_state_changed"],
                          {"get_listener_manager": self.listener_module.get_listener_manager,
                           "DagRunState": DagRunState, "__name__": "airflow.models.dagrun"},
                          within="DagRun")
        DagRun.notify_dagrun_state_changed = notify["notify_dagrun_state_changed"]
        DagRun.log = logging.getLogger("airflow.models.dagrun")
        DagRun.get_task_instances = self.session_module.provide_session(  # type: ignore
            _undecorated_get_task_instances)
        sys.modules["airflow.models.dagrun"] = _module("airflow.models.dagrun", DagRun=DagRun)
        self._install_duration_code()
        self.hookimpl = listeners_pkg.hookimpl
        self.DagRunType = self.types_module.DagRunType
        self._install_hooks()

    def _install_duration_code(self) -> None:
        """How Airflow stores a finished try's duration, its own code of this version: 2.x
        TaskInstance.set_duration (2.7.0 models/taskinstance.py:2430-2435; from 2.8 it calls the
        module's _set_duration, 2.10.3 :894-906), on the ORM object; 3.x the execution API's SQL,
        TaskInstance.duration_expression_update (3.1 models/taskinstance.py:2136-2168)."""
        path = _nearest_with(self.version, "models/taskinstance.py")
        namespace: dict[str, Any] = {
            "__name__": "airflow.models.taskinstance", "log": logging.getLogger("airflow.task"),
            "TaskInstance": TaskInstance, "TaskInstancePydantic": object,
            "datetime": dt.datetime, "Update": sa.sql.expression.Update,
            "Engine": sa.engine.Engine, "SAConnection": sa.engine.Connection,
            "func": sa.func, "extract": sa.extract, "text": sa.text}
        if self.major >= 3:
            _extract(path, ["duration_expression_update"], namespace, within="TaskInstance")
            TaskInstance.duration_expression_update = namespace["duration_expression_update"]
        else:
            _extract(path, ["_set_duration"], namespace)
            _extract(path, ["set_duration"], namespace, within="TaskInstance")
            TaskInstance.set_duration = namespace["set_duration"]

    def _install_hooks(self) -> None:
        """BaseHook where the provider looks for it: 2.x airflow.hooks.base; 3.x airflow.sdk
        (task SDK: needs the supervisor, so it fails outside a task process, as on 3.1.0 where
        the scheduler's import raises `ImportError: SUPERVISOR_COMMS`)."""
        runtime = self

        class BaseHook:
            def __init__(self, logger_name: Optional[str] = None) -> None:
                self.log = logging.getLogger(logger_name or type(self).__name__)

            @classmethod
            def get_connection(cls, conn_id: str) -> Any:
                if runtime.major >= 3:
                    if not runtime.in_task_sdk:
                        raise ImportError("cannot import name 'SUPERVISOR_COMMS' from "
                                          "'airflow.sdk.execution_time.task_runner'")
                    runtime.sdk_connection_reads += 1
                    return runtime.supervisor_connections[conn_id]
                return Connection.get_connection_from_secrets(conn_id)

        self.in_task_sdk = False
        self.sdk_connection_reads = 0
        self.supervisor_connections: dict[str, Any] = {}
        if self.major >= 3:
            sys.modules["airflow.sdk"].BaseHook = BaseHook  # type: ignore[attr-defined]
        else:
            sys.modules["airflow.hooks"] = _package("airflow.hooks")
            sys.modules["airflow.hooks.base"] = _module("airflow.hooks.base", BaseHook=BaseHook)

    def _integrate(self, lm: Any) -> None:
        """plugins_manager.integrate_listener_plugins: every plugin's listeners added."""
        for plugin in self.plugins:
            for listener in plugin.listeners:
                lm.add_listener(listener)

    def listener_manager(self, plugins: Sequence[Any]) -> Any:
        self.plugins = list(plugins)
        self.listener_module._listener_manager = None
        return self.listener_module.get_listener_manager()

    @property
    def hook(self) -> Any:
        return self.listener_module.get_listener_manager().hook

    @property
    def has_skipped_hook(self) -> bool:
        return hasattr(sys.modules["airflow.listeners.spec.taskinstance"],
                       "on_task_instance_skipped")

    # Data -----------------------------------------------------------------------------------

    def add_connection(self, conn_id: str, **fields: Any) -> None:
        extra = fields.pop("extra", None)
        with self.session_module.create_session() as session:
            session.add(Connection(conn_id=conn_id, conn_type=fields.pop("conn_type", "prewarm"),
                                   extra=json.dumps(extra) if extra else None, **fields))

    def add_run(self, dag: Any, run_id: str, run_type: str = "manual",
                interval: Optional[tuple[dt.datetime, dt.datetime]] = None,
                states: Optional[dict[str, str]] = None) -> None:
        with self.session_module.create_session() as session:
            session.add(DagRun(dag_id=dag.dag_id, run_id=run_id, run_type=run_type,
                               state=str(DagRunState.QUEUED),
                               data_interval_start=interval[0] if interval else None,
                               data_interval_end=interval[1] if interval else None))
            for task_id in dag.task_dict:
                session.add(TaskInstance(dag_id=dag.dag_id, task_id=task_id, run_id=run_id,
                                         map_index=-1, state=(states or {}).get(task_id),
                                         try_number=0, max_tries=dag.task_dict[task_id].retries))

    def add_finished_run(self, dag: Any, run_id: str, durations: dict[str, float],
                         end: dt.datetime) -> None:
        """A past run of `dag` whose tasks succeeded after `durations` seconds (tasks not named
        never ran), with each duration stored as this version's Airflow stores it. Runs are
        created in call order (dag_run.id grows)."""
        with self.session_module.create_session() as session:
            session.add(DagRun(dag_id=dag.dag_id, run_id=run_id, run_type="scheduled",
                               state=str(DagRunState.SUCCESS), start_date=end, end_date=end))
            tis = []
            for task_id in dag.task_dict:
                seconds = durations.get(task_id)
                ti = TaskInstance(dag_id=dag.dag_id, task_id=task_id, run_id=run_id,
                                  map_index=-1, try_number=1, max_tries=0,
                                  state=str(TaskInstanceState.SUCCESS if seconds is not None
                                            else TaskInstanceState.UPSTREAM_FAILED))
                if seconds is not None:
                    ti.start_date = end - dt.timedelta(seconds=seconds)
                    if self.major == 2:
                        ti.end_date = end
                        ti.set_duration()
                session.add(ti)
                tis.append((ti, seconds))
            session.flush()
            if self.major >= 3:
                # The execution API finishing each try: end_date and duration in one UPDATE.
                for ti, seconds in tis:
                    if seconds is None:
                        continue
                    query = sa.update(TaskInstance).where(
                        TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run_id,
                        TaskInstance.task_id == ti.task_id)
                    session.execute(TaskInstance.duration_expression_update(end, query,
                                                                            session.bind))

    def durations_stored(self, dag_id: str) -> dict[tuple[str, str], Optional[float]]:
        with self.session_module.create_session() as session:
            return {(t.run_id, t.task_id): t.duration
                    for t in session.query(TaskInstance).filter_by(dag_id=dag_id)}

    def run_row(self, dag_id: str, run_id: str) -> DagRun:
        with self.session_module.create_session() as session:
            return session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one()

    def set_ti_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        with self.session_module.create_session() as session:
            ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id,
                                                       task_id=task_id).one()
            ti.state = state


def _undecorated_get_task_instances(self: DagRun, state: Any = None, session: Any = None
                                    ) -> list[Any]:
    return session.query(TaskInstance).filter(TaskInstance.dag_id == self.dag_id,
                                               TaskInstance.run_id == self.run_id).all()


class AirflowPlugin:
    """airflow.plugins_manager.AirflowPlugin."""

    name: Optional[str] = None
    listeners: list[Any] = []


# --------------------------------------------------------------------------------------------
# DAGs and timetables


class Operator:
    """A (serialized) operator: task_id, upstream ids, params, retries."""

    def __init__(self, task_id: str, upstream: Sequence[str] = (), service: str = "",
                 retries: int = 0) -> None:
        self.task_id = task_id
        self.upstream_task_ids = set(upstream)
        self.params = {"prewarm_service": service} if service else {}
        self.retries = retries
        self.dag: Any = None


class Dag:
    def __init__(self, dag_id: str, operators: Sequence[Operator], timetable: Any = None,
                 start_date: Optional[dt.datetime] = None, catchup: bool = False,
                 max_active_runs: int = 16) -> None:
        self.dag_id = dag_id
        self.task_dict = {op.task_id: op for op in operators}
        for op in operators:
            op.dag = self
        self.timetable = timetable
        self.start_date = start_date
        self.end_date = None
        self.catchup = catchup
        self.max_active_runs = max_active_runs


def delta_timetable(runtime: Runtime, delta: dt.timedelta) -> Any:
    """DeltaDataIntervalTimetable (timetables/interval.py): next_dagrun_info of
    _DataIntervalTimetable for a fixed delta (catchup only, no alignment needed), on the
    version's real Timetable base, so generate_run_id is Airflow's own: 2.x names the run by its
    logical date (data interval start), 3.x by run_after (the interval's end)."""
    base = runtime.timetables

    class DeltaDataIntervalTimetable(base.Timetable):  # type: ignore[name-defined, misc]
        def next_dagrun_info(self, *, last_automated_data_interval: Any,
                             restriction: Any) -> Any:
            if last_automated_data_interval is None:
                start = restriction.earliest
            else:
                start = last_automated_data_interval.end
            if restriction.latest is not None and start > restriction.latest:
                return None
            return base.DagRunInfo.interval(start=start, end=start + delta)

    return DeltaDataIntervalTimetable()


# --------------------------------------------------------------------------------------------
# Processes


class Scheduler:
    """The scheduler's loop around the DAG-run hooks (2.7.0 jobs/scheduler_job_runner.py:
    `_run_scheduler_loop` → `with create_session() as session:` → `_do_scheduling(session)` →
    `with prohibit_commit(session) as guard:` ... `_schedule_dag_run` → `dag_run.update_state(
    session=session)` → `notify_dagrun_state_changed` (dagrun.py:640/661, 787-793) → then
    `_emit_duration_stats_for_finished_state` reads start_date / end_date (dagrun.py:730, 958) →
    `session.merge(self)` (:732) → `guard.commit()`. 3.1: the same, scheduler_job_runner.py
    ~1329/~1433, dagrun.py:1107-1360. A listener that commits this session raises
    `UNEXPECTED COMMIT`; the rollback detaches the run, and the next read of it raises
    DetachedInstanceError, which the loop does not catch: the scheduler exits."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def start_run(self, dag: Any, run_id: str) -> None:
        """_start_queued_dagruns: QUEUED → RUNNING, start_date, notify (2.7.0 scheduler_job_runner
        ~1382: `dag_run.notify_dagrun_state_changed()`), committed by the loop's guard."""
        self._pass(dag, run_id, DagRunState.RUNNING, "")

    def end_run(self, dag: Any, run_id: str, state: DagRunState,
                last_pass_states: Optional[dict[str, str]] = None) -> None:
        """update_state deciding the run's end; `last_pass_states` are task states the same
        pass changes (upstream_failed, skipped) and commits with it."""
        self._pass(dag, run_id, state, "success" if state == DagRunState.SUCCESS
                   else "task_failure", last_pass_states)

    def _pass(self, dag: Any, run_id: str, state: DagRunState, msg: str,
              last_pass_states: Optional[dict[str, str]] = None) -> None:
        create_session = self.rt.session_module.create_session
        with create_session() as session:
            with self.rt.prohibit_commit(session) as guard:
                dag_run = session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id=run_id).one()
                dag_run.dag = dag
                for task_id, ti_state in (last_pass_states or {}).items():
                    session.query(TaskInstance).filter_by(
                        dag_id=dag.dag_id, run_id=run_id, task_id=task_id).one().state = ti_state
                now = dt.datetime.now(dt.timezone.utc)
                dag_run.state = str(state)
                if state == DagRunState.RUNNING:
                    dag_run.start_date = now
                else:
                    dag_run.end_date = now
                dag_run.notify_dagrun_state_changed(msg=msg)
                # _emit_duration_stats_for_finished_state / the scheduler's own reads afterwards.
                _ = (dag_run.start_date, dag_run.end_date, dag_run.dag_id)
                session.merge(dag_run)
                guard.commit()

    def executor_reports_failure(self, dag: Any, run_id: str, task_id: str) -> None:
        """_process_executor_events → ti.handle_failure inside the scheduler (2.x and 3.x):
        on_task_instance_failed in the scheduler process, on its guarded session."""
        with self.rt.session_module.create_session() as session:
            with self.rt.prohibit_commit(session) as guard:
                ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=run_id,
                                                           task_id=task_id).one()
                ti.task = dag.task_dict[task_id]
                if self.rt.major_minor >= (2, 10):  # 2.7-2.9: the hook before the state
                    ti.state = str(TaskInstanceState.FAILED)
                ti.end_date = dt.datetime.now(dt.timezone.utc)
                kwargs: dict[str, Any] = {"previous_state": TaskInstanceState.RUNNING,
                                          "task_instance": ti}
                if self.rt.major == 2:
                    kwargs["session"] = session
                if self.rt.major_minor >= (2, 10):
                    kwargs["error"] = "Executor reports task instance finished (failed)"
                self.rt.hook.on_task_instance_failed(**kwargs)
                _ = ti.end_date
                guard.commit()


class RuntimeTaskInstance:
    """task-sdk execution_time/task_runner.py RuntimeTaskInstance (3.x), pydantic in Airflow:
    dag_id, run_id, task_id, map_index, try_number, max_tries, start_date, end_date, task, and
    `_ti_context_from_server` (TIRunContext, with `should_retry`, api/datamodels/_generated.py).
    3.0.0 has no `state` (3.0 task_runner.py:118-135); 3.0.1+ sets it before the hooks."""

    def __init__(self, version_mm: tuple[int, int], dag: Dag, run_id: str, task_id: str,
                 try_number: int, should_retry: bool) -> None:
        self.dag_id, self.run_id, self.task_id = dag.dag_id, run_id, task_id
        self.map_index = -1
        self.try_number = try_number
        self.max_tries = dag.task_dict[task_id].retries
        self.task = dag.task_dict[task_id]
        self.start_date = dt.datetime.now(dt.timezone.utc)
        self.end_date: Optional[dt.datetime] = None
        self._ti_context_from_server = types.SimpleNamespace(should_retry=should_retry,
                                                             max_tries=self.max_tries)
        self._has_state = version_mm >= (3, 1)
        if self._has_state:
            self.state: Any = TaskInstanceState.RUNNING

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"'RuntimeTaskInstance' object has no attribute '{name}'")

    def set_state(self, state: TaskInstanceState) -> None:
        if self._has_state:
            self.state = state


def task_process_2x(rt: Runtime, dag: Dag, run_id: str, task_id: str, outcome: str,
                    after: Optional[Callable[[], None]] = None) -> None:
    """One attempt in a 2.x task process, in hook order: task_command.task_run calls
    on_starting(TaskCommandMarker) (2.7.0 cli/commands/task_command.py:400); _run_raw_task
    (@provide_session: the thread's session) sets RUNNING and calls on_task_instance_running
    (models/taskinstance.py:1673); success: commit, then on_task_instance_success (:1591-1601);
    failure: handle_failure calls on_task_instance_failed *first* on 2.7-2.9 (:1936, state still
    running; 2.10: after deciding FAILED / UP_FOR_RETRY); finally before_stopping (task_command.py
    :433-437). `after` runs where the process ends (StandardTaskRunner: os._exit)."""
    hook = rt.hook
    hook.on_starting(component=TaskCommandMarker())
    with rt.session_module.create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=run_id,
                                                   task_id=task_id).one()
        ti.task = dag.task_dict[task_id]
        ti.state = str(TaskInstanceState.RUNNING)
        ti.try_number = (ti.try_number or 0) + 1
        ti.start_date = dt.datetime.now(dt.timezone.utc)
        session.commit()
        hook.on_task_instance_running(previous_state=TaskInstanceState.QUEUED, task_instance=ti,
                                      session=session)
        ti.end_date = dt.datetime.now(dt.timezone.utc)
        if outcome == "success":
            ti.state = str(TaskInstanceState.SUCCESS)
            session.commit()
            hook.on_task_instance_success(previous_state=TaskInstanceState.RUNNING,
                                          task_instance=ti, session=session)
        else:
            error = RuntimeError("task failed")
            kwargs: dict[str, Any] = {"previous_state": TaskInstanceState.RUNNING,
                                      "task_instance": ti, "session": session}
            retry = ti.is_eligible_to_retry()
            if rt.major_minor >= (2, 10):
                ti.state = str(TaskInstanceState.UP_FOR_RETRY if retry
                               else TaskInstanceState.FAILED)
                kwargs["error"] = error
            hook.on_task_instance_failed(**kwargs)
            ti.state = str(TaskInstanceState.UP_FOR_RETRY if retry else TaskInstanceState.FAILED)
            session.commit()
        # The task's own session must still hold the task instance (a listener that expunged
        # it would lose the state just set).
        assert ti in session, "the listener detached the task's TaskInstance"
    try:
        hook.before_stopping(component=TaskCommandMarker())
    except Exception:
        pass
    if after is not None:
        after()


def task_process_3x(rt: Runtime, dag: Dag, run_id: str, task_id: str, outcome: str,
                    try_number: int = 1, after: Optional[Callable[[], None]] = None) -> None:
    """One attempt in a 3.x task process (task-sdk execution_time/task_runner.py, 3.1): main()
    → startup: on_starting(TaskRunnerMarker) (:743); run(): on_task_instance_running (:831);
    finalize(): success → on_task_instance_success (:1420); up_for_retry and failed →
    on_task_instance_failed (:1430, :1440); skipped → on_task_instance_skipped where the spec has
    it (3.2+), nothing before; then before_stopping(TaskRunnerMarker) (:1449). No database in
    this process; connections come from the supervisor (task SDK). The supervisor's _fork_main
    then clears atexit handlers and calls os._exit: `after`."""
    hook = rt.hook
    rt.in_task_sdk = True
    try:
        hook.on_starting(component=TaskRunnerMarker())
        should_retry = outcome == "failed" and try_number <= dag.task_dict[task_id].retries
        ti = RuntimeTaskInstance(rt.major_minor, dag, run_id, task_id, try_number, should_retry)
        hook.on_task_instance_running(previous_state=TaskInstanceState.QUEUED, task_instance=ti)
        ti.end_date = dt.datetime.now(dt.timezone.utc)
        if outcome == "success":
            ti.set_state(TaskInstanceState.SUCCESS)
            hook.on_task_instance_success(previous_state=TaskInstanceState.RUNNING,
                                          task_instance=ti)
        elif outcome == "skipped":
            ti.set_state(TaskInstanceState.SKIPPED)
            if rt.has_skipped_hook:
                hook.on_task_instance_skipped(previous_state=TaskInstanceState.RUNNING,
                                              task_instance=ti)
        else:
            ti.set_state(TaskInstanceState.UP_FOR_RETRY if should_retry
                         else TaskInstanceState.FAILED)
            hook.on_task_instance_failed(previous_state=TaskInstanceState.RUNNING,
                                         task_instance=ti, error=RuntimeError("task failed"))
        hook.before_stopping(component=TaskRunnerMarker())
    finally:
        rt.in_task_sdk = False
    if after is not None:
        after()


# --------------------------------------------------------------------------------------------


def install(version: str, db_path: Path) -> Runtime:
    return Runtime(version, db_path)


def uninstall() -> None:
    for name in [n for n in sys.modules if n == "airflow" or n.startswith("airflow.")
                 or n == "pendulum"]:
        del sys.modules[name]
