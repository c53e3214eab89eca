"""From Airflow objects to prewarm's: run ids, DAG structure, the service of each task, next runs.

Works on Airflow 2.7+ and 3.x objects alike by reading only attributes both have:
DagRun (dag_id, run_id, start_date, logical_date, dag / get_dag(), dag_model), DAG (dag_id,
task_dict), operators (task_id, upstream_task_ids, params), TaskInstance / RuntimeTaskInstance
(dag_id, run_id, task_id, map_index, state, start_date, end_date, task).

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
class TaskNode:
    task_id: str
    upstream: tuple[str, ...]
    service: str = ""      # explicit (param, attribute or map); "" when none
    candidate: str = ""    # from the naming rule, subject to pattern_requires_registered


def explicit_service(dag_id: str, task: Any, settings: PrewarmSettings) -> str:
    task_id = str(task.task_id)
    for value in (_param_value(getattr(task, "params", None), PARAM_KEY),
                  getattr(task, ATTRIBUTE, None),
                  settings.service_map.get(f"{dag_id}.{task_id}"),
                  settings.service_map.get(task_id)):
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


def dag_structure(dag_id: str, dag: Any, settings: PrewarmSettings) -> list[TaskNode]:
    """Every task of the DAG with its upstream ids and service (explicit or candidate)."""
    tasks = dag_tasks(dag)
    ids = {str(t.task_id) for t in tasks}
    nodes = []
    for task in tasks:
        task_id = str(task.task_id)
        upstream = tuple(sorted(str(u) for u in (getattr(task, "upstream_task_ids", ()) or ())
                                if str(u) in ids))
        service = explicit_service(dag_id, task, settings)
        nodes.append(TaskNode(task_id, upstream, service,
                              "" if service else pattern_service(dag_id, task_id, settings)))
    return nodes


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


def dag_of(dag_run: Any) -> Any:
    """The DAG of a DagRun (the scheduler sets `dag_run.dag`); None when it is not loaded."""
    dag = getattr(dag_run, "dag", None)
    if dag is not None:
        return dag
    get_dag = getattr(dag_run, "get_dag", None)
    if callable(get_dag):
        try:
            return get_dag()
        except Exception:
            return None
    return None


def aware(when: Any) -> Optional[dt.datetime]:
    if not isinstance(when, dt.datetime):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class NextRun:
    run_id: str             # the Airflow run id the scheduler will give it
    start: dt.datetime      # when the scheduler will create (and start) it
    logical_date: Optional[dt.datetime]


def predicted_run_id(logical_date: Optional[dt.datetime], run_after: dt.datetime) -> str:
    """Airflow's id of a scheduled run: "scheduled__<logical date ISO 8601>" (DagRun.generate_run_id
    when Airflow is importable)."""
    generated = _compat.generate_scheduled_run_id(logical_date, run_after)
    if generated:
        return generated
    return f"scheduled__{(logical_date or run_after).isoformat()}"


def next_scheduled_run(dag_run: Any) -> Optional[NextRun]:
    """The DAG's next scheduled run, from the scheduler's own bookkeeping: DagModel.next_dagrun
    (its logical date) and next_dagrun_create_after (when the scheduler creates it). The
    scheduler advances them when it creates a run, so while a scheduled run is running they
    describe the one after it. None for DAGs without a time-based schedule."""
    dag_model = getattr(dag_run, "dag_model", None)
    if dag_model is None:
        dag_model = _compat.get_dag_model(str(dag_run.dag_id))
    if dag_model is None:
        return None
    start = aware(getattr(dag_model, "next_dagrun_create_after", None))
    if start is None:
        return None
    logical = aware(getattr(dag_model, "next_dagrun", None))
    run_id = predicted_run_id(logical, start)
    if run_id == getattr(dag_run, "run_id", None):
        return None
    return NextRun(run_id, start, logical)
