"""PrewarmSettings: everything the provider reads from the `prewarm` connection and [prewarm] config.

Connection (type `prewarm`, default id `prewarm_default`):

| field | meaning |
|---|---|
| host, port | prewarmd's gRPC address (default 127.0.0.1:50051); host may also be a full gRPC target |
| password | bearer token (sent as `authorization: Bearer <token>`); or extra `token` |
| extra `tls` | true: TLS; `root_certificates` (PEM text or file path), `client_certificate`, `client_key` (mTLS), `tls_server_name` |
| extra `timeout` | deadline of every call, seconds (default 2) |
| extra `service_map` | {"<dag_id>.<task_id>" or "<task_id>": "<service>"} |
| extra `service_pattern` | naming rule, e.g. "{task_id}" or "{dag_id}-{task_id}" (default: none) |
| extra `pattern_requires_registered` | use a pattern's name only if prewarmd has that service registered (default true) |
| extra `delay_cost_ratio` | alpha/beta sent with every run (default: the server's) |
| extra `warm_next_run` | announce each DAG's next scheduled run ahead of its start (default true) |
| extra `enabled` | false turns the listener off |
| extra `queue_size`, `flush_timeout`, `cancel_grace` | background queue bound; how long a task's last hook waits for its reports (also the time budget of one report with all its calls; default 4 × timeout + 1 s, at most 15 s: Airflow 3 kills a task process 20 s after it succeeded); how long after a DAG run ends its leftovers are cancelled |
| extra `retry_attempts`, `retry_max_backoff` | attempts of a call answered UNAVAILABLE (default 8; 1: no retry) and the longest pause between them (default 1 s); retries stay within the report's time budget |
| extra `seed_history` | send each task's median duration in Airflow's own history with a run's announcement (default true) |
| extra `history_runs`, `history_ttl` | how many of the DAG's latest runs that history is read from (default 20, at most 1000), and how long it is reused before it is read again (seconds, default 600) |

Airflow config section [prewarm] (or AIRFLOW__PREWARM__<KEY>): `conn_id`, `enabled`,
`seed_history`, `service_map` (JSON), `service_pattern`; the connection's extra wins where both
are set (`enabled` and `seed_history`: either one set to false turns it off).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional

from prewarm_client.airflow._compat import conf_get
from prewarm_client.retry import RetryPolicy

DEFAULT_CONN_ID = "prewarm_default"
DEFAULT_PORT = 50051
DEFAULT_TIMEOUT_SECONDS = 2.0
# A report's longest chain is four calls (report, list_services, Prewarm, report again); Airflow 3
# kills a task process still alive 20 s after success (supervisor), so stay well below that.
MAX_DEFAULT_FLUSH_SECONDS = 15.0
DEFAULT_RETRY_ATTEMPTS = 8
DEFAULT_RETRY_MAX_BACKOFF_SECONDS = 1.0
DEFAULT_HISTORY_RUNS = 20
MAX_HISTORY_RUNS = 1000
DEFAULT_HISTORY_TTL_SECONDS = 600.0


def default_flush_timeout(timeout: float) -> float:
    return min(4 * timeout + 1.0, MAX_DEFAULT_FLUSH_SECONDS)


def as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def as_float(value: Any, default: Optional[float]) -> Optional[float]:
    if value is None or value == "":
        return default
    return float(value)


def as_int(value: Any, default: int, what: str, low: int, high: int) -> int:
    """An int in [low, high] (an integral float or numeric string too); ValueError naming `what`
    otherwise."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    number = float(value)
    if not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return int(number)


def as_mapping(value: Any, what: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


@dataclasses.dataclass(frozen=True)
class PrewarmSettings:
    target: str = f"127.0.0.1:{DEFAULT_PORT}"
    tls: bool = False
    root_certificates: Optional[str] = None
    client_certificate: Optional[str] = None
    client_key: Optional[str] = None
    tls_server_name: Optional[str] = None
    token: Optional[str] = dataclasses.field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    service_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    service_pattern: str = ""
    pattern_requires_registered: bool = True
    delay_cost_ratio: Optional[float] = None
    warm_next_run: bool = True
    enabled: bool = True
    queue_size: int = 1000
    flush_timeout: float = default_flush_timeout(DEFAULT_TIMEOUT_SECONDS)
    cancel_grace: float = 60.0
    retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    retry_max_backoff: float = DEFAULT_RETRY_MAX_BACKOFF_SECONDS
    seed_history: bool = True
    history_runs: int = DEFAULT_HISTORY_RUNS
    history_ttl: float = DEFAULT_HISTORY_TTL_SECONDS

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.retry_attempts,
                           initial_backoff=min(0.05, self.retry_max_backoff),
                           max_backoff=self.retry_max_backoff)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of PrewarmClient: each attempt within `timeout`; a call given a
        longer deadline (a report's remaining budget) retries UNAVAILABLE within it."""
        return {"tls": self.tls, "root_certificates": self.root_certificates,
                "certificate_chain": self.client_certificate, "private_key": self.client_key,
                "tls_server_name": self.tls_server_name, "token": self.token,
                "timeout": self.timeout, "attempt_timeout": self.timeout,
                "retry": self.retry_policy()}

    @classmethod
    def from_connection(cls, conn: Any, config: bool = True) -> "PrewarmSettings":
        """From an Airflow Connection (host, port, password, extra_dejson) and, when `config`,
        the [prewarm] section of Airflow's configuration."""
        extra: dict[str, Any] = dict(getattr(conn, "extra_dejson", None) or {})
        host = (getattr(conn, "host", None) or "").strip() or "127.0.0.1"
        port = getattr(conn, "port", None)
        if "://" in host or host.startswith("unix:") or (port is None and _has_port(host)):
            target = host
        else:
            target = f"{host}:{port or DEFAULT_PORT}"
        service_map = as_mapping(conf_get("prewarm", "service_map"), "[prewarm] service_map") \
            if config else {}
        service_map.update(as_mapping(extra.get("service_map"), "extra service_map"))
        pattern = extra.get("service_pattern")
        if pattern is None and config:
            pattern = conf_get("prewarm", "service_pattern")
        enabled = as_bool(extra.get("enabled"), True)
        seed_history = as_bool(extra.get("seed_history"), True)
        if config:
            enabled = enabled and as_bool(conf_get("prewarm", "enabled"), True)
            seed_history = seed_history and as_bool(conf_get("prewarm", "seed_history"), True)
        retry_max_backoff = as_float(extra.get("retry_max_backoff"),
                                     DEFAULT_RETRY_MAX_BACKOFF_SECONDS)
        if retry_max_backoff is None or not 0 <= retry_max_backoff <= 60:
            raise ValueError(f"extra retry_max_backoff must be from 0 to 60 seconds, "
                             f"got {extra.get('retry_max_backoff')!r}")
        history_ttl = as_float(extra.get("history_ttl"), DEFAULT_HISTORY_TTL_SECONDS)
        if history_ttl is None or not history_ttl >= 0:
            raise ValueError(f"extra history_ttl must be >= 0 seconds, "
                             f"got {extra.get('history_ttl')!r}")
        timeout = as_float(extra.get("timeout"), DEFAULT_TIMEOUT_SECONDS) or DEFAULT_TIMEOUT_SECONDS
        return cls(
            target=target,
            tls=as_bool(extra.get("tls"), False),
            root_certificates=extra.get("root_certificates") or None,
            client_certificate=extra.get("client_certificate") or None,
            client_key=extra.get("client_key") or None,
            tls_server_name=extra.get("tls_server_name") or None,
            token=getattr(conn, "password", None) or extra.get("token") or None,
            timeout=timeout,
            service_map=service_map,
            service_pattern=str(pattern or ""),
            pattern_requires_registered=as_bool(extra.get("pattern_requires_registered"), True),
            delay_cost_ratio=as_float(extra.get("delay_cost_ratio"), None),
            warm_next_run=as_bool(extra.get("warm_next_run"), True),
            enabled=enabled,
            queue_size=int(extra.get("queue_size") or 1000),
            flush_timeout=as_float(extra.get("flush_timeout"), default_flush_timeout(timeout))
            or 0.0,
            cancel_grace=as_float(extra.get("cancel_grace"), 60.0) or 0.0,
            retry_attempts=as_int(extra.get("retry_attempts"), DEFAULT_RETRY_ATTEMPTS,
                                  "extra retry_attempts", 1, 100),
            retry_max_backoff=retry_max_backoff,
            seed_history=seed_history,
            history_runs=as_int(extra.get("history_runs"), DEFAULT_HISTORY_RUNS,
                                "extra history_runs", 1, MAX_HISTORY_RUNS),
            history_ttl=history_ttl,
        )


def _has_port(host: str) -> bool:
    head, sep, tail = host.rpartition(":")
    return bool(sep) and tail.isdigit() and not head.endswith(":")


def configured_conn_id() -> str:
    """[prewarm] conn_id, default prewarm_default."""
    return conf_get("prewarm", "conn_id") or DEFAULT_CONN_ID
