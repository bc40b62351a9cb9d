"""The model catalog under /api/v2/catalog: models with their cards, versions, deployments,
health and alerts; card changes; search across models, tables and columns.

A model belongs to the project of its card; a caller sees only the models of projects it
reaches (others answer 404, as if they did not exist) and changes only those it may change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from icefloe.api.lake import LazyLakehouse
from icefloe.api.projects import PAGE_SIZE, PAGE_TOKEN
from icefloe.auth.middleware import actor, principal_of
from icefloe.catalog import cards as card_store
from icefloe.catalog import entries
from icefloe.catalog.search import KINDS, MAX_LIMIT, MAX_QUERY
from icefloe.config import Settings
from icefloe.errors import InvalidInputError
from icefloe.governance import policy
from icefloe.governance.grants import EVERY_NAMESPACE, namespace_access
from icefloe.governance.membership import default_project_id
from icefloe.paging import check_page_size, offset_of, token_for
from icefloe.serving.supervisor import Supervisor
from icefloe.store import repo
from icefloe.store.db import Database

Tag = Annotated[str, Field(max_length=64)]


class CardPatch(BaseModel):
    """Change some fields of a model's card; fields left out (or null) stay as they are."""

    model_config = ConfigDict(extra="forbid")

    description: Annotated[str | None, Field(max_length=card_store.MAX_DESCRIPTION)] = None
    tags: Annotated[list[Tag] | None, Field(
        max_length=card_store.MAX_TAGS,
        description="Replaces the tags: short names (letters, digits, _ . : / + -)")] = None
    use_case: Annotated[str | None, Field(max_length=card_store.MAX_USE_CASE)] = None
    risk_level: Annotated[str | None, Field(
        max_length=16, description="low, medium, high, critical or empty")] = None
    owner: Annotated[str | None, Field(max_length=card_store.MAX_OWNER)] = None
    extra: dict[str, Any] | None = Field(
        None, description="Merged into the card's free metadata (a key set to null is "
                          "removed); the whole must stay under 64 KB as JSON")


def _visible(db: Database, request: Request) -> entries.Visible | None:
    """Which models the caller may see, by their card's project (None: every model)."""
    principal = principal_of(request.scope)
    if principal is None or principal.is_admin:
        return None
    with db.session() as s:
        default = default_project_id(s)
    return lambda project_id: principal.reaches(project_id or default)


def _tables(db: Database, request: Request) -> Callable[[str], bool] | None:
    """Which tables the caller may see: those of namespaces granted to its projects."""
    principal = principal_of(request.scope)
    if principal is None or principal.is_admin:
        return None
    with db.session() as s:
        granted = namespace_access(s, principal)
    if EVERY_NAMESPACE in granted:
        return None
    return lambda table: table.split(".", 1)[0] in granted


def add_catalog_routes(router: APIRouter, db: Database, settings: Settings,
                       supervisor: Supervisor, lakehouse: LazyLakehouse) -> None:
    """Register the catalog routes on the /api/v2 router."""

    def registry() -> Any:
        from icefloe.registry.mlflow_registry import ModelRegistry

        return ModelRegistry(settings)

    def project_of(name: str) -> str:
        with db.session() as s:
            return policy.model_project(s, settings, name)

    @router.get("/catalog/models")
    def catalog_models(request: Request, page_size: int = PAGE_SIZE,
                       page_token: str | None = PAGE_TOKEN) -> dict[str, Any]:
        check_page_size(page_size)
        offset = offset_of(page_token)
        reg = registry()
        # Only models whose card's project the caller reaches.
        sees = _visible(db, request)
        models = entries.visible_names(db, reg, sees)
        page = models[offset:offset + page_size]
        more = len(models) > offset + page_size
        return {"models": entries.summaries(db, reg, page, supervisor, sees),
                "next_page_token": token_for(offset + page_size) if more else ""}

    @router.get("/catalog/models/{name}")
    def catalog_model(name: str, request: Request) -> dict[str, Any]:
        reg = registry()
        entries.check_registered(reg, name)
        # A model of a project the caller does not reach is 404.
        policy.check_project(principal_of(request.scope), project_of(name),
                             f"model {name[:255]!r}")
        return entries.entry(db, reg, name, supervisor, _visible(db, request))

    @router.patch("/catalog/models/{name}")
    def update_card(name: str, body: CardPatch, request: Request) -> dict[str, Any]:
        fields = {k: v for k, v in body.model_dump(exclude_unset=True).items()
                  if v is not None}
        if not fields:
            raise InvalidInputError(f"nothing to change: give one of "
                                    f"{', '.join(card_store.FIELDS)}")
        card_store.check_fields({k: v for k, v in fields.items() if k != "extra"})
        entries.check_registered(registry(), name)
        with db.session() as s:
            card = card_store.get_card(s, name)
            # Changing a card needs an owner or editor of the model's project (the default
            # project's for a model never built through the API).
            project_id = (card.project_id if card else "") or project_of(name)
            policy.check_project(principal_of(request.scope), project_id,
                                 f"model {name[:255]!r}", change=True)
            # A card made here stays in the model's project ("" only before any project).
            card = card_store.patch_card(s, name, fields, project_id or None)
            repo.audit(s, actor(request.scope), "model.card.update", f"model/{name}", "ok",
                       ", ".join(sorted(fields)))
            return card_store.card_json(name, card)

    @router.get("/catalog/search")
    def catalog_search(request: Request,
                       q: str = Query(..., min_length=1, max_length=MAX_QUERY,
                                      description="words to look for"),
                       kind: str | None = Query(None, max_length=16,
                                                description=" | ".join(KINDS)),
                       limit: int = Query(50, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
        # Models of the caller's projects only; tables of the namespaces granted to them.
        return entries.search_catalog(db, registry(), lakehouse(), q, kind, limit,
                                      visible=_visible(db, request),
                                      table_visible=_tables(db, request))
