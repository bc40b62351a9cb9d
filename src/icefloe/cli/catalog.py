"""``icefloe catalog ...``: models with their cards, deployments, health and alerts; card
changes; search across models, tables and columns.

With ``--url`` (or ``$ICEFLOE_URL``) the commands ask the control plane, which also knows
each deployment's live replicas; without, they read the home (a deployment's health is then
its recorded status). ``icefloe catalog`` alone lists the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import typer
from typer.core import TyperGroup

from icefloe.cli.output import print_json, print_rows, success
from icefloe.cli.remote import JSON, KEY, KEY_FILE, URL, connect
from icefloe.cli.state import state
from icefloe.errors import InvalidInputError


class _ListByDefault(TyperGroup):
    """``icefloe catalog`` (or ``icefloe catalog --json``) is ``icefloe catalog list``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_ListByDefault, no_args_is_help=False,
                  help="The model catalog: cards, where each version is deployed, health, "
                       "alerts; search models, tables and columns (icefloe catalog lists).")


class Catalog(Protocol):
    """What the commands need, from the control plane or from the home."""

    def models(self) -> list[dict[str, Any]]: ...
    def model(self, name: str) -> dict[str, Any]: ...
    def update(self, name: str, fields: dict[str, Any]) -> dict[str, Any]: ...
    def search(self, q: str, kind: str | None, limit: int) -> dict[str, Any]: ...


class _Remote:
    """The control plane's catalog (through the SDK)."""

    def __init__(self, url: str | None, api_key: str | None, api_key_file: Path | None) -> None:
        self.client = connect(url, api_key, api_key_file)

    def models(self) -> list[dict[str, Any]]:
        return self.client.catalog_models()

    def model(self, name: str) -> dict[str, Any]:
        return self.client.catalog_model(name)

    def update(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self.client.update_model_card(name, **fields)

    def search(self, q: str, kind: str | None, limit: int) -> dict[str, Any]:
        return {"query": q.strip(), "kind": kind or None,
                "results": self.client.catalog_search(q, kind=kind, limit=limit)}


class _Local:
    """The home's catalog: its registry, platform DB and lakehouse; no supervisor."""

    def __init__(self, ctx: typer.Context) -> None:
        from icefloe.registry.mlflow_registry import ModelRegistry
        from icefloe.store.db import Database

        self.state = state(ctx)
        settings = self.state.home_settings()
        self.db = Database(settings.resolved_platform_db_url)
        self.registry = ModelRegistry(settings)

    def models(self) -> list[dict[str, Any]]:
        from icefloe.catalog import entries

        return entries.summaries(self.db, self.registry,
                                 entries.visible_names(self.db, self.registry))

    def model(self, name: str) -> dict[str, Any]:
        from icefloe.catalog import entries

        return entries.entry(self.db, self.registry, name)

    def update(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        from icefloe.catalog import cards, entries
        from icefloe.happenings import local_user
        from icefloe.store import repo

        cards.check_fields({k: v for k, v in fields.items() if k != "extra"})
        entries.check_registered(self.registry, name)
        with self.db.session() as s:
            card = cards.patch_card(s, name, fields)
            repo.audit(s, local_user(), "model.card.update", f"model/{name}", "ok",
                       ", ".join(sorted(fields)))
            return cards.card_json(name, card)

    def search(self, q: str, kind: str | None, limit: int) -> dict[str, Any]:
        from icefloe.catalog import entries

        return entries.search_catalog(self.db, self.registry, self.state.lakehouse, q, kind,
                                      limit)


def _catalog(ctx: typer.Context, url: str | None, api_key: str | None,
             api_key_file: Path | None) -> Catalog:
    return _Remote(url, api_key, api_key_file) if url else _Local(ctx)


def _deployed(views: list[dict[str, Any]]) -> str:
    return ", ".join(f"v{d['version']} {d['health']} ({d['id'][:8]})" for d in views)


@app.command("list")
def catalog_list(ctx: typer.Context, url: str | None = URL, api_key: str | None = KEY,
                 api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List the models: owner, risk, tags, latest version, deployments, firing alerts."""
    rows = _catalog(ctx, url, api_key, api_key_file).models()
    if as_json:
        print_json(rows)
        return
    print_rows([{"name": r["name"], "owner": r["owner"], "risk": r["risk_level"],
                 "tags": ", ".join(r["tags"]), "use case": r["use_case"],
                 "latest": r["latest_version"], "deployed": _deployed(r["deployed"]),
                 "firing alerts": r["firing_alerts"]} for r in rows],
               ["name", "owner", "risk", "tags", "use case", "latest", "deployed",
                "firing alerts"])


@app.command("show")
def catalog_show(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME"),
                 url: str | None = URL, api_key: str | None = KEY,
                 api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Show a model: card, versions with their data and deployments, alerts."""
    info = _catalog(ctx, url, api_key, api_key_file).model(name)
    if as_json:
        print_json(info)
        return
    card = [("owner", info["owner"]), ("project", info["project_id"]),
            ("description", info["description"]), ("use case", info["use_case"]),
            ("risk level", info["risk_level"]), ("tags", ", ".join(info["tags"])),
            ("metadata", json.dumps(info["extra"], ensure_ascii=False) if info["extra"]
             else ""),
            ("aliases", ", ".join(f"{k} -> {v}" for k, v in info["aliases"].items()))]
    print_rows([{"field": k, "value": v} for k, v in card], ["field", "value"],
               title=f"model {info['name']}")
    print_rows([{"version": v["version"], "aliases": ", ".join(v["aliases"]),
                 "trained on": f"{v['table']}@{v['snapshot_id']}" if v["table"] else None,
                 "features": ", ".join(v["features"] or []), "label": v["label_column"],
                 "auc": v["metrics"].get("auc"), "deployed": _deployed(v["deployments"])}
                for v in info["versions"]],
               ["version", "aliases", "trained on", "features", "label", "auc", "deployed"],
               title="versions")
    alerts = info["alerts"]
    if alerts["firing"] or alerts["recent"]:
        print_rows([{"at": e["at"], "deployment": e["deployment"][:8],
                     "rule": f"{e['metric']} {e['feature']}".strip(),
                     "change": f"{e['from']} -> {e['to']}", "value": e["value"],
                     "firing now": any(f["rule"] == e["rule"] for f in alerts["firing"])}
                    for e in alerts["recent"]],
                   ["at", "deployment", "rule", "change", "value", "firing now"],
                   title=f"alerts ({len(alerts['firing'])} firing)")


def _meta(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as an ``extra`` change (``key=`` removes the key)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--meta {pair[:80]!r}: use key=value (key= removes it)")
        out[key.strip()] = value if value else None
    return out


@app.command("set")
def catalog_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    description: str | None = typer.Option(None, "--description", help="What the model is."),
    tags: list[str] | None = typer.Option(
        None, "--tag", help="A tag (repeat for more); the tags given replace the card's "
                            "(--tag '' clears them)."),
    use_case: str | None = typer.Option(None, "--use-case", help="What it is used for."),
    risk: str | None = typer.Option(None, "--risk", help="low, medium, high, critical or ''."),
    owner: str | None = typer.Option(None, "--owner", help="Who answers for the model."),
    meta: list[str] | None = typer.Option(
        None, "--meta", metavar="KEY=VALUE",
        help="Free metadata (repeat for more); KEY= removes a key."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Change a model's card: only the fields given change."""
    fields: dict[str, Any] = {
        k: v for k, v in (("description", description), ("use_case", use_case),
                          ("risk_level", risk), ("owner", owner)) if v is not None}
    if tags:
        fields["tags"] = [t for t in tags if t != ""]
    if meta:
        fields["extra"] = _meta(meta)
    if not fields:
        raise InvalidInputError("nothing to change: give --description, --tag, --use-case, "
                                "--risk, --owner or --meta")
    card = _catalog(ctx, url, api_key, api_key_file).update(name, fields)
    if as_json:
        print_json(card)
    else:
        success(f"card of {name} updated: {', '.join(sorted(fields))}")


@app.command("search")
def catalog_search(
    ctx: typer.Context,
    query: str = typer.Argument(..., metavar="QUERY"),
    kind: str | None = typer.Option(None, "--kind", help="Only model, table or column hits."),
    limit: int = typer.Option(50, "--limit", help="At most this many hits (1-500)."),
    url: str | None = URL, api_key: str | None = KEY, api_key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Search models, tables and columns; a column lists the models that use it.

    Models match on name, tags, use case, risk level and description; tables on name;
    columns on name (or table.column) and type."""
    found = _catalog(ctx, url, api_key, api_key_file).search(query, kind, limit)
    if as_json:
        print_json(found)
        return

    def detail(hit: dict[str, Any]) -> str:
        if hit["kind"] == "table":
            return f"{hit['columns']} columns"
        if hit["kind"] == "column":
            users = "; ".join(f"{m['name']} (v{', v'.join(map(str, m['versions']))}"
                              f"{', label' if 'label' in m['as'] else ''})"
                              for m in hit["models"])
            return f"{hit['type'] or 'only in lineage'}" + (f"; used by {users}" if users
                                                             else "")
        return ", ".join(hit["tags"]) or hit["use_case"] or hit["description"][:80]

    print_rows([{"kind": h["kind"],
                 "name": f"{h['table']}.{h['name']}" if h["kind"] == "column" else h["name"],
                 "score": h["score"], "matched": ", ".join(h["matched"]),
                 "detail": detail(h)} for h in found["results"]],
               ["kind", "name", "score", "matched", "detail"],
               title=f"{len(found['results'])} hit(s) for {found['query']!r}")
