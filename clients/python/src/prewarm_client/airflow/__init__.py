"""prewarm's Apache Airflow provider: hook, listener plugin and operator. No Airflow import here.

- get_provider_info(): what Airflow's ProvidersManager reads (entry point `apache_airflow_provider`).
- hooks.PrewarmHook: connection type `prewarm`.
- listener / plugin.PrewarmPlugin: announces DAG runs and reports task events, no DAG change.
- operators.PrewarmServiceOperator: calls a service and reports whether the call was cold.

See docs/airflow.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]

VERSION = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "prewarm-client",
        "name": "prewarm",
        "description": "Just-in-time warm-ups of the serverless services that DAG tasks call "
                       "(prewarmd).",
        "versions": [VERSION],
        "connection-types": [{"hook-class-name": "prewarm_client.airflow.hooks.PrewarmHook",
                              "connection-type": "prewarm"}],
        "plugins": [{"name": "prewarm",
                     "plugin-class": "prewarm_client.airflow.plugin.PrewarmPlugin"}],
        "config": {
            "prewarm": {
                "description": "The prewarm listener: which connection, and how tasks map to "
                               "services.",
                "options": {
                    "conn_id": {
                        "description": "Connection (type prewarm) of prewarmd.",
                        "version_added": VERSION, "type": "string", "example": None,
                        "default": "prewarm_default",
                    },
                    "enabled": {
                        "description": "Set to False to turn the listener off.",
                        "version_added": VERSION, "type": "boolean", "example": None,
                        "default": "True",
                    },
                    "service_map": {
                        "description": "JSON object: \"<dag_id>.<task_id>\" or \"<task_id>\" to "
                                       "the service the task calls.",
                        "version_added": VERSION, "type": "string",
                        "example": '{"ml.train": "svc-b"}', "default": "",
                    },
                    "service_pattern": {
                        "description": "Naming rule for tasks without a mapping, with {dag_id} "
                                       "and {task_id}; used when prewarmd has that service.",
                        "version_added": VERSION, "type": "string", "example": "{task_id}",
                        "default": "",
                    },
                },
            },
        },
    }
