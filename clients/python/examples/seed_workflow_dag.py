"""The seed paper's workflow as an Airflow DAG: three tasks in a row, each calling one serverless
service (svc-a 3 s, svc-b 7 s, svc-c 5 s of work; about 1 s of cold start each).

Copy it into your DAGs folder with the provider installed (docs/airflow.md). Nothing in it is
needed for pre-warming except naming each task's service: the operator stores `service` in the
task's params["prewarm_service"], which the prewarm listener reads in the scheduler. With a plain
operator you would pass `params={"prewarm_service": "svc-b"}` instead, or map the tasks in the
connection's `service_map`.

Environment (read when the scheduler parses the file):
  PREWARM_SEED_BASE_URL   where the services are; default the local gateway,
                          http://127.0.0.1:8090 (deploy/local/gateway.py with
                          deploy/local/example-gateway.json). On Knative use the services' URLs.
  PREWARM_SEED_SCALE      multiplies the work times (tests use 0.1).
"""

from __future__ import annotations

import datetime as dt
import os

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.7+
    from airflow import DAG

from prewarm_client.airflow.operators import PrewarmServiceOperator

BASE_URL = os.environ.get("PREWARM_SEED_BASE_URL", "http://127.0.0.1:8090").rstrip("/")
SCALE = float(os.environ.get("PREWARM_SEED_SCALE", "1.0"))

# (task id, service, warm work seconds) — the seed paper's chain.
TASKS = (("task1", "svc-a", 3.0), ("task2", "svc-b", 7.0), ("task3", "svc-c", 5.0))

with DAG(
    dag_id="seed_workflow",
    description="Three serverless services in a row: the cascading cold start prewarm hides.",
    schedule=dt.timedelta(minutes=5),  # scheduled runs get their first task warmed too
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["prewarm", "example"],
) as dag:
    operators = [
        PrewarmServiceOperator(
            task_id=task_id,
            service=service,
            # The example service sleeps ?sleep= seconds; through the gateway the path starts
            # with the service's name.
            url=f"{BASE_URL}/{service}/task?sleep={round(seconds * SCALE, 6)}",
        )
        for task_id, service, seconds in TASKS
    ]
    operators[0] >> operators[1] >> operators[2]
