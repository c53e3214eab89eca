"""The `prewarm` Airflow plugin: registers the listener (listener.py) with Airflow.

Found through the provider's get_provider_info()["plugins"] (Airflow 2.7+) and the `airflow.plugins`
entry point; Airflow de-duplicates plugins by name.
"""

from __future__ import annotations

from prewarm_client.airflow import _compat
from prewarm_client.airflow import listener as prewarm_listener


class PrewarmPlugin(_compat.AirflowPlugin):
    name = "prewarm"
    # Airflow 2 accepts listener *modules* only.
    listeners = [prewarm_listener]
