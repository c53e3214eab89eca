"""From Airflow objects to prewarm's: run ids, DAG structure, the service of each task, next runs.

Works on Airflow 2.7+ and 3.x objects alike by reading only attributes both have:
DagRun (dag_id, run_id, run_type, start_date, data_interval_start / _end, dag), DAG (dag_id,
task_dict, timetable, start_date, end_date, catchup), operators (task_id, upstream_task_ids,
params), TaskInstance / RuntimeTaskInstance (dag_id, run_id, task_id, map_index, state,
start_date, end_date, task). Everything here is read from objects in memory: no query, no lazy
load, no session (the scheduler calls the listener inside its guarded session).

Service of a task, first match wins:
1. the task's params["prewarm_service"] (survives DAG serialization, so the scheduler sees it);
2. an operator attribute `prewarm_service` (only where the real operator is loaded);
3. the service map (connection extra / [prewarm] service_map): "<dag_id>.<task_id>", then
   "<task_id>";
4. the naming rule `service_pattern` ("{task_id}", "{dag_id}-{task_id}", ...), used only when
   prewarmd has a service of that name registered unless pattern_requires_registered is false.
A task with none calls no service: it is planned (its duration delays its descendants) but never
warmed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any, Iterable, Mapping, Optional

from prewarm_client.airflow import _compat
from prewarm_client.airflow.settings import PrewarmSettings

PARAM_KEY = "prewarm_service"
ATTRIBUTE = "prewarm_service"
MAX_RUN_ID = 250  # prewarm.v1 run ids: 1 to 250 characters


def server_run_id(dag_id: str, run_id: str) -> str:
    """The prewarm run id of an Airflow DAG run: "<dag_id>/<run_id>" (Airflow run ids are unique
    per DAG only). Over 250 characters it is shortened with a hash, deterministically, so the
    scheduler's listener and the tasks' listeners agree."""
    full = f"{dag_id}/{run_id}"
    if len(full) <= MAX_RUN_ID:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    return f"{dag_id[:110]}/{run_id[:110]}#{digest}"


def state_name(state: Any) -> str:
    """'running', 'success', ... from a TaskInstanceState / DagRunState enum or a string."""
    if state is None:
        return ""
    value = getattr(state, "value", state)
    return str(value).lower()


def _param_value(params: Any, key: str) -> Any:
    if params is None:
        return None
    try:
        value = params.get(key) if hasattr(params, "get") else None
    except Exception:  # a ParamsDict that cannot resolve the value
        return None
    # An unresolved Param object (serialized DAGs): its value.
    if value is not None and not isinstance(value, str) and hasattr(value, "value"):
        value = value.value
    return value


@dataclasses.dataclass(frozen=True)
class TaskShape:
    """A task as the DAG declares it, copied out of Airflow's objects."""

    task_id: str
    upstream: tuple[str, ...]
    declared_service: str = ""   # params["prewarm_service"] or the operator's attribute


@dataclasses.dataclass(frozen=True)
class TaskNode:
    task_id: str
    upstream: tuple[str, ...]
    service: str = ""      # explicit (param, attribute or map); "" when none
    candidate: str = ""    # from the naming rule, subject to pattern_requires_registered


def declared_service(task: Any) -> str:
    for value in (_param_value(getattr(task, "params", None), PARAM_KEY),
                  getattr(task, ATTRIBUTE, None)):
        if value:
            return str(value)
    return ""


def explicit_service(dag_id: str, task: TaskShape, settings: PrewarmSettings) -> str:
    for value in (task.declared_service,
                  settings.service_map.get(f"{dag_id}.{task.task_id}"),
                  settings.service_map.get(task.task_id)):
        if value:
            return str(value)
    return ""


def pattern_service(dag_id: str, task_id: str, settings: PrewarmSettings) -> str:
    if not settings.service_pattern:
        return ""
    try:
        return settings.service_pattern.format(dag_id=dag_id, task_id=task_id)
    except (KeyError, IndexError, ValueError):
        return ""


def dag_tasks(dag: Any) -> list[Any]:
    task_dict = getattr(dag, "task_dict", None)
    if isinstance(task_dict, Mapping):
        return list(task_dict.values())
    return list(getattr(dag, "tasks", ()) or ())


def dag_shape(dag: Any) -> list[TaskShape]:
    """Every task of the DAG with its upstream ids and declared service (no settings needed, so
    a hook can copy it and leave the rest to the reporter's thread)."""
    tasks = dag_tasks(dag)
    ids = {str(t.task_id) for t in tasks}
    return [TaskShape(str(task.task_id),
                      tuple(sorted(str(u) for u in (getattr(task, "upstream_task_ids", ()) or ())
                                   if str(u) in ids)),
                      declared_service(task))
            for task in tasks]


def nodes_of(dag_id: str, tasks: Iterable[TaskShape], settings: PrewarmSettings
             ) -> list[TaskNode]:
    """The tasks with their services: explicit (declared or mapped) or a naming-rule candidate."""
    nodes = []
    for task in tasks:
        service = explicit_service(dag_id, task, settings)
        nodes.append(TaskNode(task.task_id, task.upstream, service,
                              "" if service else pattern_service(dag_id, task.task_id, settings)))
    return nodes


def dag_structure(dag_id: str, dag: Any, settings: PrewarmSettings) -> list[TaskNode]:
    """Every task of the DAG with its upstream ids and service (explicit or candidate)."""
    return nodes_of(dag_id, dag_shape(dag), settings)


def resolve(nodes: Iterable[TaskNode], settings: PrewarmSettings,
            registered: Optional[set[str]]) -> list[dict[str, Any]]:
    """The tasks as prewarm_client dicts, naming-rule candidates kept only when allowed."""
    out = []
    for node in nodes:
        service = node.service
        if not service and node.candidate:
            if not settings.pattern_requires_registered or (
                    registered is not None and node.candidate in registered):
                service = node.candidate
        out.append({"task_id": node.task_id, "service": service, "upstream": list(node.upstream)})
    return out


def aware(when: Any) -> Optional[dt.datetime]:
    if not isinstance(when, dt.datetime):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class NextRun:
    run_id: str             # the Airflow run id the scheduler will give it
    start: dt.datetime      # when the scheduler will create (and start) it


def next_scheduled_run(dag: Any, dag_run: Any) -> Optional[NextRun]:
    """The scheduled run after `dag_run`, as the scheduler will create it: the DAG's timetable
    asked for the run after this run's data interval (timetable.next_dagrun_info, as the
    scheduler's DagModel.calculate_dagrun_date_fields does), named by the timetable
    (timetable.generate_run_id: 2.x with the logical date, 3.x with run_after). Independent of
    max_active_runs, which only delays the creation. None for runs that are not scheduled
    (manual, backfill, asset-triggered), DAGs without a time-based schedule, and the last run."""
    if state_name(getattr(dag_run, "run_type", None)) != "scheduled":
        return None
    timetable = getattr(dag, "timetable", None)
    start, end = (aware(getattr(dag_run, "data_interval_start", None)),
                  aware(getattr(dag_run, "data_interval_end", None)))
    if timetable is None or start is None or end is None:
        return None
    info = timetable.next_dagrun_info(last_automated_data_interval=_compat.data_interval(start, end),
                                      restriction=_compat.time_restriction(dag))
    if info is None:
        return None
    run_id = _compat.scheduled_run_id(timetable, info)
    after = aware(info.run_after)
    if run_id is None or after is None or run_id == getattr(dag_run, "run_id", None):
        return None
    return NextRun(run_id, after)
