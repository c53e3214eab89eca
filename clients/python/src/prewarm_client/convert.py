"""Conversions between Python time values and google.protobuf Timestamp / Duration.

Instants are timezone-aware datetimes (naive ones are taken as UTC, like Airflow's) or unix
seconds; spans are timedeltas or seconds.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Optional, Union

from google.protobuf import duration_pb2, timestamp_pb2

Instant = Union[dt.datetime, float, int]
Span = Union[dt.timedelta, float, int]


def unix_seconds(when: Instant) -> float:
    """Unix seconds of a datetime (naive = UTC) or a number."""
    if isinstance(when, dt.datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(f"expected a datetime or unix seconds, got {type(when).__name__}")
    if not math.isfinite(when):
        raise ValueError(f"time {when!r} is not finite")
    return float(when)


def span_seconds(span: Span) -> float:
    """Seconds of a timedelta or a number."""
    if isinstance(span, dt.timedelta):
        return span.total_seconds()
    if isinstance(span, bool) or not isinstance(span, (int, float)):
        raise TypeError(f"expected a timedelta or seconds, got {type(span).__name__}")
    if not math.isfinite(span):
        raise ValueError(f"duration {span!r} is not finite")
    return float(span)


def timestamp(when: Instant) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(round(unix_seconds(when) * 1e9)))
    return t


def duration(span: Span) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(span_seconds(span) * 1e9)))
    return d


def to_datetime(t: timestamp_pb2.Timestamp) -> Optional[dt.datetime]:
    """An aware UTC datetime; None for an unset (zero) timestamp."""
    if t.seconds == 0 and t.nanos == 0:
        return None
    return dt.datetime.fromtimestamp(t.ToNanoseconds() / 1e9, tz=dt.timezone.utc)


def to_unix_seconds(t: timestamp_pb2.Timestamp) -> float:
    return t.ToNanoseconds() / 1e9


def to_seconds(d: duration_pb2.Duration) -> float:
    return d.ToNanoseconds() / 1e9


__all__ = ["Instant", "Span", "unix_seconds", "span_seconds", "timestamp", "duration",
           "to_datetime", "to_unix_seconds", "to_seconds"]
