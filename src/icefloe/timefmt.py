"""The one timestamp format of every JSON answer and every ``--json`` output.

ISO 8601 in UTC with milliseconds and an explicit offset, whatever the source:
``2026-11-26T10:00:00.123+00:00``. SQLite hands datetimes back naive (they were stored as
UTC), Postgres aware, Iceberg and MLflow give epoch milliseconds: all come out the same, so
the same field has one shape everywhere and texts of one kind sort as their times do.
"""

from __future__ import annotations

from datetime import UTC, datetime


def stored_utc(value: datetime) -> datetime:
    """A datetime read back from the store, made aware: naive ones are UTC (SQLite returns
    them naive), aware ones are kept as they are."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso_utc(value: datetime | int | float | None) -> str | None:
    """``value`` as ISO 8601 UTC text with milliseconds and ``+00:00``; None stays None.

    Args:
        value: A datetime (naive means UTC, aware ones are converted) or milliseconds since
            the epoch.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = stored_utc(value).astimezone(UTC)
    elif isinstance(value, bool):
        raise TypeError("a bool is not a point in time")
    else:
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds")
