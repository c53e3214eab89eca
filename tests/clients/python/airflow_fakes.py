"""A fake Apache Airflow, shaped exactly like the parts of 2.7+, 2.10 and 3.x the provider touches.

Apache Airflow cannot be installed here (no PyPI). These fakes mirror its objects and, above all,
its listener machinery: a pluggy PluginManager("airflow") with hook specs copied in shape from
airflow/listeners/spec/{taskinstance,dagrun,lifecycle}.py of each version, listeners registered from
plugins' `listeners` (modules), and hooks called with keyword arguments exactly as Airflow calls
them. Pluggy validates our hook implementations against each spec, as in Airflow.

Specs (checked against apache/airflow sources):
- 2.7 (airflow/listeners/spec/taskinstance.py): on_task_instance_running/success/failed
  (previous_state, task_instance, session); dagrun.py: on_dag_run_running/success/failed
  (dag_run, msg); lifecycle.py: on_starting(component), before_stopping(component).
- 2.10: on_task_instance_failed gains `error`: (previous_state, task_instance, error, session).
- 3.x (airflow-core/src/airflow/listeners/spec + the task SDK's task_runner.py):
  on_task_instance_running(previous_state, task_instance) with a RuntimeTaskInstance,
  on_task_instance_success(previous_state, task_instance), on_task_instance_failed(previous_state,
  task_instance, error); dag runs as in 2.x; before_stopping(component=TaskRunnerMarker()) at the
  end of the task process. on_task_instance_skipped(previous_state, task_instance) only from 3.2
  (apache/airflow PR #59467; backported to 3.1.x in February 2026): "3.2" here. 3.1.0's
  finalize() calls no listener hook for a skipped task (task_runner.py:1427-1428).

This module checks the provider's *shape* against Airflow's objects. Airflow's *behaviour* (its
real session and commit guard, listener manager, specs, timetables and hook order of every
version) is in airflow_runtime.py, which loads Airflow's own source.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import os
import sys
import types
import uuid
from collections.abc import MutableMapping
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import pluggy

VERSIONS = ("2.7", "2.10", "3.1", "3.2")


class TaskInstanceState(str, enum.Enum):
    """airflow.utils.state.TaskInstanceState (a str enum)."""

    REMOVED = "removed"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    RESTARTING = "restarting"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"

    def __str__(self) -> str:
        return self.value


class DagRunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class DagRunType(str, enum.Enum):
    """airflow.utils.types.DagRunType."""

    BACKFILL_JOB = "backfill"
    SCHEDULED = "scheduled"
    MANUAL = "manual"

    def __str__(self) -> str:
        return self.value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# DAG objects


class Param:
    """airflow.models.param.Param: a value with a schema."""

    def __init__(self, default: Any = None, **schema: Any) -> None:
        self.value = default
        self.schema = schema

    def resolve(self) -> Any:
        return self.value


class ParamsDict(MutableMapping):
    """airflow.models.param.ParamsDict: holds Params; item access resolves their values."""

    def __init__(self, params: Optional[dict[str, Any]] = None) -> None:
        self.__dict = {k: v if isinstance(v, Param) else Param(v) for k, v in (params or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self.__dict[key].resolve()

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict[key] = value if isinstance(value, Param) else Param(value)

    def __delitem__(self, key: str) -> None:
        del self.__dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict)

    def __len__(self) -> int:
        return len(self.__dict)

    def get_param(self, key: str) -> Param:
        return self.__dict[key]


class SerializedParams(dict):
    """What a serialized (scheduler-side, 3.x) operator's params hold: Param objects that `get`
    returns unresolved."""


class Operator:
    """A BaseOperator (2.x airflow.models.baseoperator / 3.x airflow.sdk) as built in a DAG file:
    custom attributes such as `prewarm_service` survive here (not in the serialized DAG)."""

    def __init__(self, task_id: str, params: Optional[dict[str, Any]] = None,
                 **attributes: Any) -> None:
        self.task_id = task_id
        self.params = ParamsDict(params)
        self.upstream_task_ids: set[str] = set()
        self.downstream_task_ids: set[str] = set()
        self.dag: Optional[DAG] = None
        for key, value in attributes.items():
            setattr(self, key, value)

    def __rshift__(self, other: Any) -> Any:
        return _chain(self, other)


class SerializedOperator:
    """The scheduler's view of an operator (SerializedBaseOperator): task_id, dependencies and
    params only; operator attributes are gone."""

    __slots__ = ("task_id", "params", "upstream_task_ids", "downstream_task_ids", "dag")

    def __init__(self, op: Operator) -> None:
        self.task_id = op.task_id
        self.params = SerializedParams({k: op.params.get_param(k) for k in op.params})
        self.upstream_task_ids = set(op.upstream_task_ids)
        self.downstream_task_ids = set(op.downstream_task_ids)
        self.dag = None


_dag_context: list["DAG"] = []


class DAG:
    """airflow DAG (2.x `airflow.DAG`, 3.x `airflow.sdk.DAG`): dag_id, task_dict {task_id:
    operator}, tasks; a context manager that collects the operators created inside it."""

    def __init__(self, dag_id: str, operators: Sequence[Any] = (), *, schedule: Any = None,
                 start_date: Optional[dt.datetime] = None, catchup: bool = False,
                 tags: Optional[list[str]] = None, default_args: Optional[dict[str, Any]] = None,
                 params: Optional[dict[str, Any]] = None, description: str = "") -> None:
        self.dag_id = dag_id
        self.schedule = schedule
        self.start_date = start_date
        self.catchup = catchup
        self.tags = tags or []
        self.params = ParamsDict(params)
        self.description = description
        self.task_dict: dict[str, Any] = {}
        for op in operators:
            self.add_task(op)

    def add_task(self, op: Any) -> None:
        if op.task_id in self.task_dict:
            raise ValueError(f"Task id '{op.task_id}' has already been added to the DAG")
        self.task_dict[op.task_id] = op
        op.dag = self

    def __enter__(self) -> "DAG":
        _dag_context.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _dag_context.pop()

    @property
    def tasks(self) -> list[Any]:
        return list(self.task_dict.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self.task_dict)

    def get_task(self, task_id: str) -> Any:
        return self.task_dict[task_id]

    def serialized(self) -> "DAG":
        return DAG(self.dag_id, [SerializedOperator(op) for op in self.task_dict.values()])


def _chain(upstream: Any, downstream: Any) -> Any:
    for down in (downstream if isinstance(downstream, (list, tuple)) else [downstream]):
        upstream.downstream_task_ids.add(down.task_id)
        down.upstream_task_ids.add(upstream.task_id)
    return downstream


def make_dag(dag_id: str, spec: Iterable[tuple[str, Sequence[str], dict[str, Any]]]) -> DAG:
    """spec: (task_id, upstream task ids, operator kwargs: params=..., attributes...)."""
    ops = {task_id: Operator(task_id, **kwargs) for task_id, _, kwargs in spec}
    for task_id, upstream, _ in spec:
        for u in upstream:
            ops[task_id].upstream_task_ids.add(u)
            ops[u].downstream_task_ids.add(task_id)
    return DAG(dag_id, list(ops.values()))


class DagModel:
    """airflow.models.dag.DagModel: the scheduler's bookkeeping of a DAG's next run."""

    def __init__(self, dag_id: str, next_dagrun: Optional[dt.datetime] = None,
                 next_dagrun_create_after: Optional[dt.datetime] = None) -> None:
        self.dag_id = dag_id
        self.is_paused = False
        self.next_dagrun = next_dagrun
        self.next_dagrun_data_interval_start = next_dagrun
        self.next_dagrun_data_interval_end = next_dagrun_create_after
        self.next_dagrun_create_after = next_dagrun_create_after


class DagRun:
    """airflow.models.dagrun.DagRun (the ORM object the scheduler passes to dag-run listeners)."""

    def __init__(self, dag: DAG, run_id: str, *, run_type: str = "manual",
                 logical_date: Optional[dt.datetime] = None, start_date: Optional[dt.datetime] = None,
                 dag_model: Optional[DagModel] = None, dag_attached: bool = True) -> None:
        self.dag_id = dag.dag_id
        self.run_id = run_id
        self.run_type = run_type
        self.state = DagRunState.QUEUED
        self.logical_date = logical_date
        self.execution_date = logical_date
        self.data_interval_start = logical_date
        self.data_interval_end = logical_date
        self.queued_at = utcnow()
        self.start_date = start_date
        self.end_date: Optional[dt.datetime] = None
        self.conf: dict[str, Any] = {}
        # The scheduler sets `dag_run.dag` (a serialized DAG) before notifying listeners.
        self.dag: Optional[DAG] = dag.serialized() if dag_attached else None
        self._full_dag = dag
        self.dag_model = dag_model
        self.task_instances: dict[str, Any] = {}

    def get_dag(self) -> DAG:
        if not self.dag:
            raise RuntimeError(f"The DAG (.dag) for {self} needs to be set")
        return self.dag

    def get_task_instances(self, state: Any = None, session: Any = None) -> list[Any]:
        tis = list(self.task_instances.values())
        if state is not None:
            tis = [ti for ti in tis if ti.state in state]
        return tis

    def __repr__(self) -> str:
        return f"<DagRun {self.dag_id} @ {self.logical_date}: {self.run_id}, state:{self.state}>"


class TaskInstance:
    """airflow.models.taskinstance.TaskInstance (2.x), as listeners receive it."""

    def __init__(self, dag_run: DagRun, task_id: str) -> None:
        self.dag_id = dag_run.dag_id
        self.task_id = task_id
        self.run_id = dag_run.run_id
        self.map_index = -1
        self.try_number = 1
        self.max_tries = 0
        self.state: Optional[TaskInstanceState] = TaskInstanceState.QUEUED
        self.start_date: Optional[dt.datetime] = None
        self.end_date: Optional[dt.datetime] = None
        self.duration: Optional[float] = None
        self.hostname = "worker-1"
        self.operator = "PrewarmServiceOperator"
        self.pool = "default_pool"
        self.queue = "default"
        self.task = dag_run._full_dag.get_task(task_id)
        self.dag_run = dag_run
        self.execution_date = dag_run.logical_date

    def __repr__(self) -> str:
        return f"<TaskInstance: {self.dag_id}.{self.task_id} {self.run_id} [{self.state}]>"


class RuntimeTaskInstance:
    """airflow.sdk.execution_time.task_runner.RuntimeTaskInstance (3.x): the task process's view.
    Slots: reading any attribute it does not have raises AttributeError (no dag_run, no
    execution_date, no DB)."""

    __slots__ = ("id", "task_id", "dag_id", "run_id", "try_number", "map_index", "hostname",
                 "task", "max_tries", "start_date", "end_date", "state", "is_mapped",
                 "rendered_map_index")

    def __init__(self, dag_run: DagRun, task_id: str) -> None:
        self.id = uuid.uuid4()
        self.task_id = task_id
        self.dag_id = dag_run.dag_id
        self.run_id = dag_run.run_id
        self.try_number = 1
        self.map_index = -1
        self.hostname = "worker-1"
        self.task = dag_run._full_dag.get_task(task_id)
        self.max_tries = 0
        self.start_date = utcnow()
        self.end_date: Optional[dt.datetime] = None
        self.state: Optional[TaskInstanceState] = TaskInstanceState.RUNNING
        self.is_mapped = False
        self.rendered_map_index = None


class TaskRunnerMarker:
    """airflow.sdk.execution_time.task_runner.TaskRunnerMarker: before_stopping's component."""


class Session:
    """Stands for the SQLAlchemy session Airflow 2 passes to task-instance listeners."""


# --------------------------------------------------------------------------------------------
# Listener specs (pluggy), per version

hookspec = pluggy.HookspecMarker("airflow")


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def spec_modules(version: str) -> list[types.ModuleType]:
    """The hook-spec modules Airflow `version` adds to its PluginManager."""

    @hookspec
    def on_starting(component): ...

    @hookspec
    def before_stopping(component): ...

    @hookspec
    def on_dag_run_running(dag_run, msg): ...

    @hookspec
    def on_dag_run_success(dag_run, msg): ...

    @hookspec
    def on_dag_run_failed(dag_run, msg): ...

    lifecycle = _module("lifecycle", on_starting=on_starting, before_stopping=before_stopping)
    dagrun = _module("dagrun", on_dag_run_running=on_dag_run_running,
                     on_dag_run_success=on_dag_run_success, on_dag_run_failed=on_dag_run_failed)
    if version.startswith("2."):
        @hookspec
        def on_task_instance_running(previous_state, task_instance, session): ...

        @hookspec
        def on_task_instance_success(previous_state, task_instance, session): ...

        if version == "2.7":
            @hookspec
            def on_task_instance_failed(previous_state, task_instance, session): ...
        else:
            @hookspec
            def on_task_instance_failed(previous_state, task_instance, error, session): ...

        taskinstance = _module("taskinstance", on_task_instance_running=on_task_instance_running,
                               on_task_instance_success=on_task_instance_success,
                               on_task_instance_failed=on_task_instance_failed)
    else:
        @hookspec
        def on_task_instance_running(previous_state, task_instance): ...

        @hookspec
        def on_task_instance_success(previous_state, task_instance): ...

        @hookspec
        def on_task_instance_failed(previous_state, task_instance, error): ...

        taskinstance = _module("taskinstance", on_task_instance_running=on_task_instance_running,
                               on_task_instance_success=on_task_instance_success,
                               on_task_instance_failed=on_task_instance_failed)
        if version != "3.1":
            @hookspec
            def on_task_instance_skipped(previous_state, task_instance): ...

            taskinstance.on_task_instance_skipped = on_task_instance_skipped
    return [lifecycle, dagrun, taskinstance]


# --------------------------------------------------------------------------------------------
# The fake `airflow` package


class AirflowNotFoundException(Exception):
    """airflow.exceptions.AirflowNotFoundException."""


class Connection:
    """airflow.models.connection.Connection (the fields hooks read)."""

    def __init__(self, conn_id: str, conn_type: str = "", host: Optional[str] = None,
                 port: Optional[int] = None, login: Optional[str] = None,
                 password: Optional[str] = None, schema: Optional[str] = None,
                 extra: Any = None, description: str = "") -> None:
        self.conn_id, self.conn_type, self.description = conn_id, conn_type, description
        self.host, self.port, self.login, self.password, self.schema = host, port, login, password, schema
        self.extra = json.dumps(extra) if isinstance(extra, dict) else extra

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return json.loads(self.extra) if self.extra else {}

    @classmethod
    def get_connection_from_secrets(cls, conn_id: str) -> "Connection":
        """models/connection.py get_connection_from_secrets: the environment variable, then the
        metastore (here the fake's table), else AirflowNotFoundException (2.7.0 :448-477). The
        real metastore path, with its session, is in airflow_runtime.py."""
        if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
            from prewarm_client.airflow._compat import connection_from_env  # noqa: PLC0415
            return connection_from_env(conn_id)
        fake = installed()
        if fake is not None and conn_id in fake.connections:
            return fake.connections[conn_id]
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")


class TaskCommandMarker:
    """cli/commands/task_command.py TaskCommandMarker (2.x): on_starting's component in a task
    process (task_command.py:400)."""


class FakeAirflow:
    """The installed fake: its version, connections, config, and Airflow's listener calls."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.major = int(version.split(".")[0])
        self.connections: dict[str, Connection] = {}
        self.config: dict[tuple[str, str], str] = {}
        self.plugins: list[Any] = []
        self.dag_runs: dict[tuple[str, str], DagRun] = {}
        self._pm: Optional[pluggy.PluginManager] = None

    # Airflow's configuration and connections ----------------------------------------------

    def set_connection(self, conn_id: str, **fields: Any) -> Connection:
        conn = Connection(conn_id, **fields)
        self.connections[conn_id] = conn
        return conn

    def task_states(self, dag_id: str, run_id: str) -> list[Any]:
        """What the listener's end-of-run read finds in the metadata DB: every task instance of
        the run (those never created have state None)."""
        from prewarm_client.airflow.listener import TaskStateRow  # noqa: PLC0415
        run = self.dag_runs[(dag_id, run_id)]
        rows = []
        for task_id in run._full_dag.task_dict:
            ti = run.task_instances.get(task_id)
            rows.append(TaskStateRow(task_id, -1 if ti is None else (ti.map_index or -1),
                                     "" if ti is None else str(ti.state or ""),
                                     None if ti is None else ti.end_date))
        return rows

    def task_durations(self, dag_id: str, runs: int, timeout: float) -> list[tuple[str, float]]:
        """What the listener's history read finds in the metadata DB: (task_id, duration) of the
        successful task instances of the DAG's `runs` latest finished runs (success or failed,
        as _compat.recent_task_durations selects them). Airflow stores a finished
        try's end_date - start_date as TaskInstance.duration (2.7.0 models/taskinstance.py
        :2430-2435 set_duration; 3.1 models/taskinstance.py:2136-2168, the execution API's
        duration_expression_update); computed here from the same two dates."""
        finished = (DagRunState.SUCCESS, DagRunState.FAILED)
        recent = [run for (d, _), run in self.dag_runs.items()
                  if d == dag_id and run.state in finished][-runs:]
        rows = []
        for run in recent:
            for ti in run.task_instances.values():
                if (ti.state == TaskInstanceState.SUCCESS and (ti.map_index or -1) <= 0
                        and ti.start_date and ti.end_date):
                    rows.append((ti.task_id, (ti.end_date - ti.start_date).total_seconds()))
        return rows

    # The listener manager (airflow.listeners.listener.get_listener_manager) ------------------

    def listener_manager(self, plugins: Sequence[Any]) -> pluggy.PluginManager:
        """Like Airflow: a PluginManager("airflow") with the version's specs and every plugin's
        listener modules registered (pluggy validates them against the specs)."""
        pm = pluggy.PluginManager("airflow")
        for spec in spec_modules(self.version):
            pm.add_hookspecs(spec)
        for plugin in plugins:
            for listener in plugin.listeners:
                if not isinstance(listener, types.ModuleType):
                    raise TypeError(f"Listener {listener} is not module")  # Airflow 2 refuses
                if not pm.is_registered(listener):
                    pm.register(listener)
        self._pm = pm
        # The listener's end-of-run read (a query on Airflow's metadata DB) reads this fake's
        # runs instead; the real query runs against Airflow's session code in airflow_runtime.
        from prewarm_client.airflow import listener as listener_module  # noqa: PLC0415
        listener_module.read_task_states = self.task_states
        listener_module.read_task_durations = self.task_durations
        return pm

    @property
    def hook(self) -> Any:
        assert self._pm is not None, "call listener_manager(plugins) first"
        return self._pm.hook

    # Airflow's calls, with each version's exact keyword arguments -----------------------------

    def dag_run_running(self, dag_run: DagRun) -> None:
        self.dag_runs[(dag_run.dag_id, dag_run.run_id)] = dag_run
        dag_run.state = DagRunState.RUNNING
        dag_run.start_date = dag_run.start_date or utcnow()
        self.hook.on_dag_run_running(dag_run=dag_run, msg="started")

    def dag_run_success(self, dag_run: DagRun) -> None:
        self.dag_runs[(dag_run.dag_id, dag_run.run_id)] = dag_run
        dag_run.state = DagRunState.SUCCESS
        dag_run.end_date = utcnow()
        self.hook.on_dag_run_success(dag_run=dag_run, msg="success")

    def dag_run_failed(self, dag_run: DagRun) -> None:
        self.dag_runs[(dag_run.dag_id, dag_run.run_id)] = dag_run
        dag_run.state = DagRunState.FAILED
        dag_run.end_date = utcnow()
        self.hook.on_dag_run_failed(dag_run=dag_run, msg="task_failure")

    def task_instance(self, dag_run: DagRun, task_id: str) -> Any:
        """The object a listener receives for this task: TaskInstance (2.x) or
        RuntimeTaskInstance (3.x)."""
        cls = TaskInstance if self.major == 2 else RuntimeTaskInstance
        ti = cls(dag_run, task_id)
        dag_run.task_instances[task_id] = ti
        return ti

    def task_running(self, ti: Any) -> None:
        ti.state = TaskInstanceState.RUNNING
        ti.start_date = utcnow()
        if self.major == 2:
            # task_command.task_run: on_starting(TaskCommandMarker()) before the task runs.
            self.hook.on_starting(component=TaskCommandMarker())
            self.hook.on_task_instance_running(previous_state=TaskInstanceState.QUEUED,
                                               task_instance=ti, session=Session())
        else:
            self.hook.on_task_instance_running(previous_state=TaskInstanceState.QUEUED,
                                               task_instance=ti)

    def task_success(self, ti: Any) -> None:
        ti.state = TaskInstanceState.SUCCESS
        ti.end_date = utcnow()
        if self.major == 2:
            self.hook.on_task_instance_success(previous_state=TaskInstanceState.RUNNING,
                                               task_instance=ti, session=Session())
        else:
            self.hook.on_task_instance_success(previous_state=TaskInstanceState.RUNNING,
                                               task_instance=ti)
            self.hook.before_stopping(component=TaskRunnerMarker())

    def task_failed(self, ti: Any, error: BaseException, retry: bool = False) -> None:
        ti.state = TaskInstanceState.UP_FOR_RETRY if retry else TaskInstanceState.FAILED
        ti.end_date = utcnow()
        if self.version == "2.7":
            self.hook.on_task_instance_failed(previous_state=TaskInstanceState.RUNNING,
                                              task_instance=ti, session=Session())
        elif self.major == 2:
            self.hook.on_task_instance_failed(previous_state=TaskInstanceState.RUNNING,
                                              task_instance=ti, error=error, session=Session())
        else:
            self.hook.on_task_instance_failed(previous_state=TaskInstanceState.RUNNING,
                                              task_instance=ti, error=error)
            self.hook.before_stopping(component=TaskRunnerMarker())

    def task_skipped(self, ti: Any) -> None:
        """A task that skips itself (AirflowSkipException): 3.2+ calls on_task_instance_skipped;
        2.x and 3.1.0 call no task-instance hook (the DAG run's end reports it)."""
        ti.state = TaskInstanceState.SKIPPED
        ti.end_date = utcnow()
        if self.version != "3.1" and self.major >= 3:
            self.hook.on_task_instance_skipped(previous_state=TaskInstanceState.RUNNING,
                                               task_instance=ti)


def _base_hook_class(fake: FakeAirflow) -> type:
    class BaseHook:
        """airflow.hooks.base.BaseHook / airflow.sdk.BaseHook."""

        def __init__(self, logger_name: Optional[str] = None) -> None:
            self._log = logging.getLogger(logger_name or type(self).__name__)

        @property
        def log(self) -> logging.Logger:
            return self._log

        @classmethod
        def get_connection(cls, conn_id: str) -> Connection:
            try:
                return fake.connections[conn_id]
            except KeyError:
                raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined") from None

        def get_conn(self) -> Any:
            raise NotImplementedError

    return BaseHook


class BaseOperator:
    """airflow.models.baseoperator.BaseOperator / airflow.sdk.BaseOperator (constructor shape)."""

    template_fields: Sequence[str] = ()

    def __init__(self, *, task_id: str, params: Optional[dict[str, Any]] = None,
                 retries: int = 0, dag: Optional[DAG] = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"Invalid arguments were passed to {type(self).__name__} "
                            f"(task_id: {task_id}). Invalid arguments were: **kwargs: {kwargs}")
        self.task_id = task_id
        self.params = ParamsDict(params)
        self.retries = retries
        self.upstream_task_ids: set[str] = set()
        self.downstream_task_ids: set[str] = set()
        self.dag = None
        self.log = logging.getLogger(type(self).__name__)
        target = dag if dag is not None else (_dag_context[-1] if _dag_context else None)
        if target is not None:
            target.add_task(self)

    def __rshift__(self, other: Any) -> Any:
        return _chain(self, other)

    def set_downstream(self, other: Any) -> None:
        _chain(self, other)


class AirflowPlugin:
    """airflow.plugins_manager.AirflowPlugin."""

    name: Optional[str] = None
    hooks: list[Any] = []
    listeners: list[Any] = []


def _generate_run_id_2(run_type: DagRunType, execution_date: dt.datetime) -> str:
    return f"{run_type}__{execution_date.isoformat()}"


def _generate_run_id_3(*, run_type: DagRunType, logical_date: Optional[dt.datetime],
                       run_after: dt.datetime) -> str:
    return f"{run_type}__{(logical_date or run_after).isoformat()}"


_installed: Optional[FakeAirflow] = None


def install(version: str) -> FakeAirflow:
    """Puts a fake `airflow` of `version` into sys.modules and forgets prewarm_client.airflow so
    that it is imported again against it."""
    global _installed
    uninstall()
    fake = FakeAirflow(version)
    base_hook = _base_hook_class(fake)
    hookimpl = pluggy.HookimplMarker("airflow")
    specs = spec_modules(version)

    class Conf:
        def get(self, section: str, key: str, fallback: Any = None) -> Any:
            return fake.config.get((section, key), fallback)

    class DagRunModel:
        generate_run_id = staticmethod(_generate_run_id_2 if fake.major == 2
                                       else _generate_run_id_3)

    modules = {
        "airflow": _module("airflow", __version__=f"{version}.0", __path__=[],
                           **({"DAG": DAG} if version.startswith("2.") else {})),
        "airflow.exceptions": _module("airflow.exceptions",
                                      AirflowNotFoundException=AirflowNotFoundException),
        "airflow.configuration": _module("airflow.configuration", conf=Conf()),
        "airflow.listeners": _module("airflow.listeners", hookimpl=hookimpl, __path__=[]),
        "airflow.listeners.spec": _module("airflow.listeners.spec", __path__=[]),
        "airflow.plugins_manager": _module("airflow.plugins_manager", AirflowPlugin=AirflowPlugin),
        "airflow.models": _module("airflow.models", __path__=[], Connection=Connection),
        "airflow.models.connection": _module("airflow.models.connection", Connection=Connection),
        "airflow.models.dagrun": _module("airflow.models.dagrun", DagRun=DagRunModel),
        "airflow.utils": _module("airflow.utils", __path__=[]),
        "airflow.utils.types": _module("airflow.utils.types", DagRunType=DagRunType),
        "airflow.utils.state": _module("airflow.utils.state", TaskInstanceState=TaskInstanceState,
                                       DagRunState=DagRunState),
    }
    for spec in specs:
        modules[f"airflow.listeners.spec.{spec.__name__}"] = spec
    if fake.major == 2:
        modules["airflow.hooks"] = _module("airflow.hooks", __path__=[])
        modules["airflow.hooks.base"] = _module("airflow.hooks.base", BaseHook=base_hook)
        modules["airflow.models.baseoperator"] = _module("airflow.models.baseoperator",
                                                         BaseOperator=BaseOperator)
    else:
        modules["airflow.sdk"] = _module("airflow.sdk", BaseHook=base_hook, DAG=DAG,
                                         BaseOperator=BaseOperator, __path__=[])
    sys.modules.update(modules)
    fake.modules = modules
    _forget_provider()
    _installed = fake
    return fake


def _forget_provider() -> None:
    try:
        from prewarm_client.airflow import listener, reporter  # noqa: PLC0415
        listener.set_listener(None)
        reporter.close_all()
    except Exception:
        pass
    for name in [n for n in sys.modules if n == "prewarm_client.airflow"
                 or n.startswith("prewarm_client.airflow.")]:
        del sys.modules[name]


def uninstall() -> None:
    """Removes the fake airflow and the provider modules imported against it."""
    global _installed
    _forget_provider()
    for name in [n for n in sys.modules if n == "airflow" or n.startswith("airflow.")]:
        del sys.modules[name]
    _installed = None


def installed() -> Optional[FakeAirflow]:
    return _installed


# --------------------------------------------------------------------------------------------
# A recording stand-in for PrewarmClient (listener tests without a server)


class RecordingClient:
    """Records calls as (method, args...) tuples; `fail` maps a method to an exception to raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, Callable[[], BaseException]] = {}
        self.services: list[Any] = []

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        if method in self.fail:
            raise self.fail[method]()

    def prewarm(self, run_id: str, workflow_id: str, tasks: Any, **kwargs: Any) -> Any:
        self._record("prewarm", run_id, workflow_id, list(tasks), kwargs)

    def report(self, run_id: str, task_id: str, event: str, **kwargs: Any) -> Any:
        self._record("report", run_id, task_id, event, kwargs)

    def cancel_run(self, run_id: str, **kwargs: Any) -> int:
        self._record("cancel_run", run_id)
        return 0

    def list_services(self, **kwargs: Any) -> list[Any]:
        self._record("list_services")
        return self.services

    def close(self) -> None:
        pass

    def of(self, method: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == method]
