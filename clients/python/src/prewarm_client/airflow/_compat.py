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
from typing import Any, Callable, Optional
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


def generate_scheduled_run_id(logical_date: Any, run_after: Any) -> Optional[str]:
    """The run id Airflow gives the scheduled run of `logical_date` (DagRun.generate_run_id, whose
    signature differs between 2.x and 3.x), or None when Airflow is not importable."""
    dag_run_cls = _try_import("airflow.models.dagrun", "DagRun")
    run_type_cls = _try_import("airflow.utils.types", "DagRunType")
    if dag_run_cls is None or run_type_cls is None:
        return None
    import inspect  # noqa: PLC0415
    try:
        params = inspect.signature(dag_run_cls.generate_run_id).parameters
        if "run_after" in params:  # 3.x: keyword-only run_type, logical_date, run_after
            return dag_run_cls.generate_run_id(run_type=run_type_cls.SCHEDULED,
                                               logical_date=logical_date, run_after=run_after)
        return dag_run_cls.generate_run_id(run_type_cls.SCHEDULED, logical_date)
    except Exception:
        return None


def get_dag_model(dag_id: str) -> Any:
    """DagModel.get_dagmodel(dag_id) when Airflow's metadata database is reachable, else None."""
    dag_model_cls = _try_import("airflow.models.dag", "DagModel")
    if dag_model_cls is None:
        return None
    try:
        return dag_model_cls.get_dagmodel(dag_id)
    except Exception:
        return None
