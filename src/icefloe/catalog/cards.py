"""Model cards: what people say about a registered model, and the project it belongs to.

A card is made the first time a model is seen (:func:`ensure_card`, when it is first
built) and changed by its project's editors (:func:`patch_card`). Every field is checked
here, whoever calls (the API, the CLI on a home): a bad value is a 422 naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from icefloe.errors import InvalidInputError
from icefloe.store import repo
from icefloe.store.orm import ModelCard
from icefloe.timefmt import iso_utc

RISK_LEVELS = ("", "low", "medium", "high", "critical")
FIELDS = ("owner", "description", "tags", "use_case", "risk_level", "extra")
MAX_TAGS = 50
MAX_DESCRIPTION = 10_000
MAX_USE_CASE = 1_000
MAX_OWNER = 255
MAX_EXTRA_BYTES = 64 * 1024
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+\-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tabs and newlines are text


def _text(field: str, value: Any, limit: int, *, one_line: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{field}: must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidInputError(f"{field}: at most {limit:,} characters, got {len(value):,}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{field}: not valid Unicode text") from None
    if _CONTROL.search(value) or (one_line and ("\n" in value or "\r" in value)):
        raise InvalidInputError(f"{field}: holds a control character")
    return value


def check_tags(value: Any) -> list[str]:
    """Tags as stored: short names, duplicates dropped, order kept.

    Raises:
        InvalidInputError: Not a list of names, or more than :data:`MAX_TAGS`.
    """
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"tags: must be a list of names, got {type(value).__name__}")
    tags = list(dict.fromkeys(value))
    if len(tags) > MAX_TAGS:
        raise InvalidInputError(f"tags: at most {MAX_TAGS}, got {len(tags)}")
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise InvalidInputError(
                f"tags: invalid tag {str(tag)[:80]!r}: 1-64 letters, digits, '_', '.', ':', "
                "'/', '+' or '-', starting with a letter or digit")
    return tags


def check_extra(value: Any) -> dict[str, Any]:
    """Free metadata as stored: a JSON object under :data:`MAX_EXTRA_BYTES` encoded.

    Raises:
        InvalidInputError: Not an object, not JSON (NaN, infinity, invalid text) or too big.
    """
    if not isinstance(value, dict):
        raise InvalidInputError(f"extra: must be a JSON object, got {type(value).__name__}")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        raise InvalidInputError("extra: must be plain JSON (text, finite numbers, lists, "
                                "objects) in valid Unicode") from None
    if len(encoded) >= MAX_EXTRA_BYTES:
        raise InvalidInputError(f"extra: must be under {MAX_EXTRA_BYTES // 1024} KB as JSON, "
                                f"got {len(encoded):,} bytes")
    return value


def check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Card fields as stored (risk level in lower case, tags without duplicates).

    Args:
        fields: Some of :data:`FIELDS`.

    Raises:
        InvalidInputError: An unknown field or a bad value, naming the field.
    """
    out: dict[str, Any] = {}
    for field, value in fields.items():
        if field == "description":
            out[field] = _text(field, value, MAX_DESCRIPTION)
        elif field == "use_case":
            out[field] = _text(field, value, MAX_USE_CASE)
        elif field == "owner":
            out[field] = _text(field, value, MAX_OWNER, one_line=True).strip()
        elif field == "risk_level":
            level = _text(field, value, 16, one_line=True).strip().lower()
            if level not in RISK_LEVELS:
                raise InvalidInputError(f"risk_level: {str(value)[:20]!r} is not one of "
                                        f"{', '.join(r for r in RISK_LEVELS if r)} (or empty)")
            out[field] = level
        elif field == "tags":
            out[field] = check_tags(value)
        elif field == "extra":
            out[field] = check_extra(value)
        else:
            raise InvalidInputError(f"{str(field)[:80]}: not a card field (one of "
                                    f"{', '.join(FIELDS)})")
    return out


def merged_extra(current: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with ``change`` applied as a JSON merge patch of one level: a key set to
    None is removed, any other value replaces the key's."""
    out = dict(current)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def get_card(s: Session, name: str) -> ModelCard | None:
    """The card of a model, or None if it has none yet."""
    return s.get(ModelCard, name)


def cards(s: Session, names: list[str] | None = None) -> dict[str, ModelCard]:
    """Cards by model name (of ``names`` only, if given)."""
    query = select(ModelCard)
    if names is not None:
        query = query.where(ModelCard.name.in_(names))
    return {c.name: c for c in s.scalars(query)}


def _insert_if_absent(s: Session, name: str, project_id: str, owner: str) -> None:
    """Add a blank card unless one exists: one statement, so two first builds racing make
    one card and neither fails."""
    values = {"name": name, "project_id": project_id, "owner": owner, "description": "",
              "tags": [], "use_case": "", "risk_level": "", "extra": {},
              "created_at": repo.now(), "updated_at": repo.now()}
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.execute(postgresql.insert(ModelCard).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        s.execute(sqlite.insert(ModelCard).values(**values).on_conflict_do_nothing())
    elif s.get(ModelCard, name) is None:
        s.add(ModelCard(**values))
        s.flush()


def ensure_card(s: Session, model_name: str, project_id: str | None, owner: str = "") -> ModelCard:
    """The card of a model, made the first time the model is seen.

    A card made before its project was known (``project_id`` "") takes the first project
    given later; an owned card never moves project here.

    Args:
        s: An open session.
        model_name: The registered model.
        project_id: The project it is seen in ("" or None: not known).
        owner: Who saw it first (the card's owner if the card is new; for a job run, the
            user it acts as).
    """
    owner = (owner or "").split(" (run/")[0][:MAX_OWNER]  # a job run's user, not the run
    _insert_if_absent(s, model_name, project_id or "", owner)
    card = s.get(ModelCard, model_name, populate_existing=True)
    assert card is not None  # just inserted, or there already
    if project_id and not card.project_id:
        card.project_id = project_id
        card.updated_at = repo.now()
        s.flush()
    return card


def upsert_card(s: Session, name: str, fields: Mapping[str, Any],
                project_id: str | None = None) -> ModelCard:
    """Set card fields (``extra`` replaced whole), making the card if there is none.

    Raises:
        InvalidInputError: A bad field, named.
    """
    checked = check_fields(fields)
    card = ensure_card(s, name, project_id)
    for field, value in checked.items():
        setattr(card, field, value)
    card.updated_at = repo.now()
    s.flush()
    return card


def patch_card(s: Session, name: str, fields: Mapping[str, Any],
               project_id: str | None = None) -> ModelCard:
    """Change some card fields, making the card if there is none; ``extra`` is merged
    (:func:`merged_extra`: a key set to None is removed), the others replace.

    Raises:
        InvalidInputError: A bad field, named (the merged ``extra`` is checked too).
    """
    checked = check_fields({k: v for k, v in fields.items() if k != "extra"})
    card = ensure_card(s, name, project_id)
    if "extra" in fields:
        if not isinstance(fields["extra"], dict):
            check_extra(fields["extra"])  # names the field
        checked["extra"] = check_extra(merged_extra(card.extra or {}, fields["extra"]))
    for field, value in checked.items():
        setattr(card, field, value)
    card.updated_at = repo.now()
    s.flush()
    return card


def card_json(name: str, card: ModelCard | None) -> dict[str, Any]:
    """A model's card as plain data (blank fields for a model without one)."""
    if card is None:
        return {"name": name, "project_id": "", "owner": "", "description": "", "tags": [],
                "use_case": "", "risk_level": "", "extra": {}, "created_at": None,
                "updated_at": None}
    return {"name": card.name, "project_id": card.project_id, "owner": card.owner,
            "description": card.description, "tags": list(card.tags or []),
            "use_case": card.use_case, "risk_level": card.risk_level,
            "extra": dict(card.extra or {}), "created_at": iso_utc(card.created_at),
            "updated_at": iso_utc(card.updated_at)}
