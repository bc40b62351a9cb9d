"""Catalog search (pure): models, tables and columns ranked by how well they match a query.

Matching is plain text, case-insensitive, on words: an exact value scores highest, then a
value that starts with the query, then a word of it that does (``inc`` finds
``annual_inc``: ``_``, ``.``, ``-`` and spaces split words), then the query anywhere in it,
then every word of a several-word query starting some word of it. Each field has a weight
(a model's name counts more than its description); a hit scores its best field.

A column hit names the models that use it: every model whose version lineage lists that
column of that table as a feature or as the label column. Columns known only from lineage
(the table was dropped, or its schema rolled back since) are found too, without a type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from icefloe.errors import InvalidInputError

KINDS = ("model", "table", "column")
MAX_QUERY = 255
MAX_LIMIT = 500
_ORDER = {kind: i for i, kind in enumerate(KINDS)}
_WORD_BREAK = re.compile(r"[\W_]+")

# Field weights: what a person means by a name outweighs what a description mentions.
MODEL_FIELDS = (("name", 3.0), ("tags", 2.0), ("use_case", 1.5), ("risk_level", 1.0),
                ("description", 1.0))
TABLE_WEIGHT = 3.0
COLUMN_WEIGHT = 3.0
TYPE_WEIGHT = 0.5  # "double" lists double columns, below any name that says double


@dataclass(frozen=True)
class ModelDoc:
    """What search reads of a model: its name and card."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    use_case: str = ""
    risk_level: str = ""


@dataclass(frozen=True)
class Column:
    """A column of a table's current schema (``type`` None: known only from lineage)."""

    name: str
    type: str | None = None


@dataclass(frozen=True)
class TableDoc:
    """A table (``namespace.table``) with its columns."""

    name: str
    columns: tuple[Column, ...] = ()


@dataclass(frozen=True)
class Usage:
    """The columns of a table one model version learned from."""

    model: str
    version: int
    table: str
    features: tuple[str, ...] = ()
    label: str = ""


def check_query(query: str | None) -> str:
    """The query without surrounding spaces.

    Raises:
        InvalidInputError: Empty, or over :data:`MAX_QUERY` characters.
    """
    text = (query or "").strip()
    if not text:
        raise InvalidInputError("q: give something to search for")
    if len(text) > MAX_QUERY:
        raise InvalidInputError(f"q: at most {MAX_QUERY} characters, got {len(text)}")
    return text


def check_kind(kind: str | None) -> str | None:
    """``kind`` if it is one of :data:`KINDS` (None or "" for all).

    Raises:
        InvalidInputError: Naming the kind and the ones there are.
    """
    if not kind:
        return None
    if kind not in KINDS:
        raise InvalidInputError(f"kind {kind[:50]!r} is not one of {', '.join(KINDS)}")
    return kind


def check_limit(limit: int) -> int:
    """``limit`` if it is 1 to :data:`MAX_LIMIT`, else 422 naming it."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _words(text: str) -> list[str]:
    return [w for w in _WORD_BREAK.split(text) if w]


def text_score(query: str, text: str) -> float:
    """How well ``text`` matches ``query``, from 0 (not at all) to 1 (the same, ignoring
    case)."""
    q, t = query.strip().casefold(), text.strip().casefold()
    if not q or not t:
        return 0.0
    if t == q:
        return 1.0
    if t.startswith(q):
        return 0.8
    words = _words(t)
    if any(w.startswith(q) for w in words):
        return 0.6
    if q in t:
        return 0.5
    terms = _words(q)
    if len(terms) > 1 and all(any(w.startswith(term) for w in words) for term in terms):
        return 0.4
    return 0.0


def _model_hit(query: str, doc: ModelDoc) -> dict[str, object] | None:
    values = {"name": [doc.name], "tags": list(doc.tags), "use_case": [doc.use_case],
              "risk_level": [doc.risk_level], "description": [doc.description]}
    scores = {field: weight * max((text_score(query, v) for v in values[field]), default=0.0)
              for field, weight in MODEL_FIELDS}
    matched = [field for field, _ in MODEL_FIELDS if scores[field] > 0]
    if not matched:
        return None
    return {"kind": "model", "name": doc.name, "score": round(max(scores.values()), 3),
            "matched": matched, "description": doc.description, "tags": list(doc.tags),
            "use_case": doc.use_case, "risk_level": doc.risk_level}


def _table_hit(query: str, table: TableDoc) -> dict[str, object] | None:
    short = table.name.rsplit(".", 1)[-1]
    score = TABLE_WEIGHT * max(text_score(query, table.name), text_score(query, short))
    if score <= 0:
        return None
    return {"kind": "table", "name": table.name, "score": round(score, 3),
            "matched": ["name"], "columns": len(table.columns)}


def models_using(table: str, column: str, usages: Iterable[Usage]) -> list[dict[str, object]]:
    """The models whose versions learned from ``table.column``: each with its versions and
    whether the column was a ``feature`` or the ``label``, by model name."""
    found: dict[str, tuple[set[int], set[str]]] = {}
    for use in usages:
        if use.table != table:
            continue
        roles = ({"feature"} if column in use.features else set()) | (
            {"label"} if column == use.label else set())
        if roles:
            versions, had = found.setdefault(use.model, (set(), set()))
            versions.add(use.version)
            had |= roles
    return [{"name": name, "versions": sorted(versions), "as": sorted(roles)}
            for name, (versions, roles) in sorted(found.items())]


def all_columns(tables: Iterable[TableDoc], usages: Iterable[Usage]
                ) -> list[tuple[str, Column]]:
    """Every ``(table, column)``: the lakehouse's, then those only lineage still names."""
    out: list[tuple[str, Column]] = []
    seen: set[tuple[str, str]] = set()
    for table in tables:
        for col in table.columns:
            if (table.name, col.name) not in seen:
                seen.add((table.name, col.name))
                out.append((table.name, col))
    for use in usages:
        for name in (*use.features, *([use.label] if use.label else [])):
            if (use.table, name) not in seen:
                seen.add((use.table, name))
                out.append((use.table, Column(name)))
    return out


def _column_hit(query: str, table: str, col: Column,
                usages: Sequence[Usage]) -> dict[str, object] | None:
    scores = {"name": COLUMN_WEIGHT * max(text_score(query, col.name),
                                          # "loans.annual_inc", "lending.loans.annual_inc"
                                          text_score(query, f"{table}.{col.name}")
                                          if "." in query else 0.0),
              "type": TYPE_WEIGHT * (text_score(query, col.type) if col.type else 0.0)}
    matched = [field for field, score in scores.items() if score > 0]
    if not matched:
        return None
    return {"kind": "column", "name": col.name, "table": table, "type": col.type,
            "score": round(max(scores.values()), 3), "matched": matched,
            "models": models_using(table, col.name, usages)}


def search(query: str, models: Iterable[ModelDoc], tables: Iterable[TableDoc],
           usages: Iterable[Usage], kind: str | None = None,
           limit: int = 50) -> list[dict[str, object]]:
    """Rank what matches ``query``, best first (ties: models, tables, columns, then by name).

    Args:
        query: What to look for (see :func:`text_score`).
        models: The models to search (their cards).
        tables: The tables to search, with their current columns.
        usages: What each model version learned from (for column hits, and for columns
            only lineage still names).
        kind: Only ``model``, ``table`` or ``column`` hits (None: all).
        limit: At most this many hits.

    Returns:
        Hits as plain data, each with ``kind``, ``name``, ``score`` and ``matched`` (the
        fields that matched), and per kind: a model's card fields; a table's column count;
        a column's ``table``, ``type`` and ``models`` (:func:`models_using`).

    Raises:
        InvalidInputError: An empty query, an unknown kind or a limit out of 1 to
            :data:`MAX_LIMIT`.
    """
    query, kind, limit = check_query(query), check_kind(kind), check_limit(limit)
    uses = list(usages)
    hits: list[dict[str, object] | None] = []
    if kind in (None, "model"):
        hits += [_model_hit(query, m) for m in models]
    table_list = list(tables)
    if kind in (None, "table"):
        hits += [_table_hit(query, t) for t in table_list]
    if kind in (None, "column"):
        hits += [_column_hit(query, t, c, uses) for t, c in all_columns(table_list, uses)]
    found = [h for h in hits if h is not None]
    found.sort(key=lambda h: (-float(h["score"]), _ORDER[str(h["kind"])],  # type: ignore[arg-type]
                              str(h.get("table", "")), str(h["name"])))
    return found[:limit]
