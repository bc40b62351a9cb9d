"""Templates and the small formatting the pages share (pure, apart from loading templates).

Jinja2 escapes every value it prints (autoescape), so a table, job or column named
``<script>`` is shown as text; nothing here marks user data safe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from icefloe.auth.principals import Principal

PAGE_SIZE = 50


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates, autoescaped."""
    env = Environment(loader=PackageLoader("icefloe.ui", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, duration=duration, number=number, short=short)
    env.globals.update(query=query)
    return env


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with what every page shows (who is signed in, the CSRF token)."""
    from icefloe.ui.site import csrf

    who: Principal | None = request.scope.get("icefloe.ui.principal")
    html = environment().get_template(template).render(
        request=request, who=who, csrf=csrf(request) if who else "",
        path=request.url.path, args=dict(request.query_params), **context)
    return HTMLResponse(html, status_code=status)


def offset_of(request: Request) -> int:
    """The list offset a URL asks for (``?offset=``), bounded."""
    try:
        return max(0, min(int(request.query_params.get("offset", "0")), 10_000_000))
    except ValueError:
        return 0


def paged(items: list[Any], request: Request, size: int = PAGE_SIZE
          ) -> tuple[list[Any], int, bool]:
    """One page of a list already in memory: ``(items, offset, more after)``."""
    offset = offset_of(request)
    return items[offset:offset + size], offset, len(items) > offset + size


def when(value: Any) -> str:
    """A time as ``2026-11-28 10:01:02`` UTC (from ISO text, epoch ms or a datetime)."""
    if value in (None, ""):
        return ""
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 07s`` or ``4.2s``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from one ISO time to another (now when ``end`` is empty)."""
    if not start:
        return None
    begin = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    finish = (datetime.fromisoformat(str(end).replace("Z", "+00:00")) if end
              else datetime.now(UTC))
    return max(0.0, (finish - begin).total_seconds())


def number(value: Any, digits: int = 3) -> str:
    """A figure for a table cell: integers with separators, floats to ``digits``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:  # a count logged as a float
            return f"{int(value):,}"
        return f"{value:,.{digits}f}"
    return str(value)


def short(value: Any, length: int = 8) -> str:
    """The first characters of an id."""
    text = str(value or "")
    return text[:length]


def query(args: dict[str, Any], **changes: Any) -> str:
    """The page's query string with some arguments changed (None removes one), so filters
    and selections stay in the URL."""
    merged = {**args, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, "")}
    return ("?" + urlencode(kept)) if kept else "?"
