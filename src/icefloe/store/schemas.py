"""Each store's own PostgreSQL schema: made before a store first connects.

With one ``database_url`` (see :func:`icefloe.config.store_url`) the catalog, MLflow and the
platform DB share a PostgreSQL database, each with its schema first on the search path; a
schema must exist before PyIceberg, MLflow or Alembic create tables in it.
"""

from __future__ import annotations

import contextlib
import re
import threading
from urllib.parse import parse_qs, urlsplit

_SCHEMA = re.compile(r"-csearch_path=([a-z_][a-z0-9_]{0,62})")
_made: set[str] = set()
_lock = threading.Lock()


def schema_of(url: str) -> str | None:
    """The schema a URL's ``options=-csearch_path=...`` names, if any."""
    if not url.startswith("postgresql"):
        return None
    options = parse_qs(urlsplit(url).query).get("options", [])
    found = _SCHEMA.fullmatch(options[0]) if options else None
    return found.group(1) if found else None


def ensure_schema(url: str) -> None:
    """``CREATE SCHEMA IF NOT EXISTS`` the schema of ``url`` (once per process and URL)."""
    schema = schema_of(url)
    if schema is None or url in _made:
        return
    with _lock:
        if url in _made:
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            # Another process making it at the same moment loses with a duplicate error.
            with engine.connect() as conn, contextlib.suppress(IntegrityError,
                                                               ProgrammingError):
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        finally:
            engine.dispose()
        _made.add(url)
