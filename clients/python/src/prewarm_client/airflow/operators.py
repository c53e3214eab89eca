"""PrewarmServiceOperator: a task that calls one serverless service and reports how it went.

    PrewarmServiceOperator(
        task_id="train",
        url="http://svc-b.default.svc.cluster.local/train",
        service="svc-b",                        # also tells the listener which service to warm
    )

It calls the URL (PrewarmHook.call_service), tells a cold call from a warm one, reports
SERVICE_INVOKED with `cold` and `cold_start` to prewarmd, and returns the response body (XCom).
`service` is stored in the task's params["prewarm_service"], which survives DAG serialization,
so the listener in the scheduler knows the task's service without any other mapping.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from prewarm_client.airflow import _compat
from prewarm_client.airflow.dags import PARAM_KEY
from prewarm_client.airflow.hooks import PrewarmHook
from prewarm_client.airflow.settings import DEFAULT_CONN_ID


class PrewarmServiceOperator(_compat.BaseOperator):
    template_fields = ("url", "data")

    def __init__(self, *, url: str, service: Optional[str] = None, method: str = "GET",
                 data: Optional[str] = None, headers: Optional[Mapping[str, str]] = None,
                 request_timeout: float = 300.0, cold_threshold: Optional[float] = None,
                 prewarm_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        if service:
            params = dict(kwargs.pop("params", None) or {})
            params.setdefault(PARAM_KEY, service)
            kwargs["params"] = params
        super().__init__(**kwargs)
        self.url = url
        self.service = service
        self.method = method
        self.data = data
        self.headers = dict(headers or {})
        self.request_timeout = request_timeout
        self.cold_threshold = cold_threshold
        self.prewarm_conn_id = prewarm_conn_id

    def execute(self, context: Mapping[str, Any]) -> str:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None)
        run_id = context.get("run_id") or getattr(ti, "run_id", None)
        hook = PrewarmHook(self.prewarm_conn_id)
        result = hook.call_service(
            self.url, dag_id=dag_id, run_id=run_id, task_id=self.task_id, service=self.service,
            method=self.method, data=self.data.encode() if isinstance(self.data, str) else None,
            headers=self.headers, timeout=self.request_timeout,
            cold_threshold=self.cold_threshold)
        return result.text()
