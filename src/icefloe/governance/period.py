"""The period of an access report (pure, light: the CLI checks it before any request).

A bound is an ISO 8601 time (naive means UTC), ``now``, or a span before now (``30m``,
``12h``, ``7d``, ``2w``); a period is ``[since, until)``, by default the last 30 days.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from icefloe.errors import InvalidInputError
from icefloe.timefmt import iso_utc, stored_utc

DEFAULT_PERIOD = timedelta(days=30)
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_RELATIVE = re.compile(r"\s*(\d{1,7})\s*([smhdw])\s*")


def utc(moment: datetime) -> datetime:
    """A datetime in UTC (naive means UTC)."""
    return stored_utc(moment).astimezone(UTC)


def parse_moment(text: str, name: str, now: datetime) -> datetime:
    """A point in time: ISO 8601 (naive means UTC), ``now``, or a span before now
    (``30m``, ``12h``, ``7d``, ``2w``).

    Args:
        text: What was given.
        name: The option or field it came from, named in the error.
        now: What "now" is.

    Raises:
        InvalidInputError: Anything else, naming ``name``.
    """
    if text.strip().lower() == "now":
        return utc(now)
    found = _RELATIVE.fullmatch(text)
    try:
        if found:
            return utc(now) - timedelta(seconds=int(found.group(1)) * _UNITS_S[found.group(2)])
        return utc(datetime.fromisoformat(text.strip()))
    except (ValueError, OverflowError):
        pass
    raise InvalidInputError(f"{name} {text[:64]!r} is neither a time like 2026-11-01 or "
                            "2026-11-01T10:00:00+00:00 nor a span before now like 30m, 12h, "
                            "7d or 2w")


def period(since: str | None, until: str | None, now: datetime, *,
           names: tuple[str, str] = ("since", "until")) -> tuple[datetime, datetime]:
    """The period ``[since, until)``: by default the last 30 days up to ``now``.

    Raises:
        InvalidInputError: A bad value, or since not before until (naming the field).
    """
    end = parse_moment(until, names[1], now) if until else utc(now)
    try:
        start = parse_moment(since, names[0], now) if since else end - DEFAULT_PERIOD
    except OverflowError:
        raise InvalidInputError(f"{names[1]} {until!r} is too early") from None
    if start >= end:
        raise InvalidInputError(f"{names[0]} ({iso_utc(start)}) must be before {names[1]} "
                                f"({iso_utc(end)})")
    return start, end


