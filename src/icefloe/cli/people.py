"""``icefloe user ...``, ``icefloe whoami`` and a project's members and grants.

Users sign in with API keys only: ``icefloe user create NAME`` makes the user and prints
their first key once. These commands talk to a running ``icefloe up`` (see
:mod:`icefloe.cli.remote`); projects can be named or given by id.
"""

from __future__ import annotations

from pathlib import Path

import typer

from icefloe.cli.jobs import project_app
from icefloe.cli.output import console, print_json, print_rows, success
from icefloe.cli.remote import JSON, KEY, KEY_FILE, URL, connect

user_app = typer.Typer(help="Users and their keys (admins).", no_args_is_help=True)


@user_app.command("create")
def user_create(name: str,
                admin: bool = typer.Option(False, "--admin", help="A platform admin."),
                key_role: str = typer.Option(
                    "editor", "--key-role",
                    help="Role of the first key: editor, or viewer for a read-only key "
                         "(admins get an admin key)."),
                url: str | None = URL, api_key: str | None = KEY,
                api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Make a user and their first API key (shown once)."""
    with connect(url, api_key, api_key_file) as client:
        user = client.create_user(name, admin=admin)
        key = client.create_key(name, "admin" if admin else key_role)
    if as_json:
        print_json({**user, "key": key})
        return
    success(f"created user {user['name']}" + (" (admin)" if admin else ""))
    console.print(f"  API key (role {key['role']}; shown once, store it now): "
                  f"{key['api_key']}", markup=False)


@user_app.command("list")
def user_list(url: str | None = URL, api_key: str | None = KEY,
              api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List users with their projects and roles."""
    with connect(url, api_key, api_key_file) as client:
        users = client.list_users()
    if as_json:
        print_json(users)
        return
    print_rows([{**u, "projects": ", ".join(f"{p['name']} ({p['role']})"
                                            for p in u["projects"])} for u in users],
               ["name", "admin", "projects", "keys", "created_at"])


def whoami(url: str | None = URL, api_key: str | None = KEY,
           api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Show who this API key acts as and where."""
    with connect(url, api_key, api_key_file) as client:
        me = client.me()
    if as_json:
        print_json(me)
        return
    console.print(f"{me['name']}" + (" (platform admin)" if me["admin"] else ""),
                  markup=False)
    print_rows(me["projects"], ["name", "role", "id"])


@project_app.command("members")
def project_members(project: str, url: str | None = URL, api_key: str | None = KEY,
                    api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List a project's members and their roles."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.list_members(client.project(project)["id"])
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, ["user", "role", "added_by", "added_at"])


@project_app.command("member")
def project_member(project: str, user: str,
                   role: str = typer.Option("", "--role", help="owner, editor or viewer."),
                   remove: bool = typer.Option(False, "--remove",
                                               help="Take the user out of the project."),
                   url: str | None = URL, api_key: str | None = KEY,
                   api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Give a user a role in a project, or take them out (owners and admins)."""
    if remove == bool(role):
        raise typer.BadParameter("give either --role ROLE or --remove")
    with connect(url, api_key, api_key_file) as client:
        project_id = client.project(project)["id"]
        if remove:
            client.remove_member(project_id, user)
            result = {"user": user, "removed": True}
        else:
            result = client.set_member(project_id, user, role)
    if as_json:
        print_json(result)
    elif remove:
        success(f"{user} is no longer a member of {project}")
    else:
        success(f"{user} is {role} of {project}")


@project_app.command("grant")
def project_grant(project: str, namespace: str,
                  access: str = typer.Option("", "--access", help="read or write."),
                  remove: bool = typer.Option(False, "--remove",
                                              help="Take the grant away."),
                  url: str | None = URL, api_key: str | None = KEY,
                  api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """Let a project read or write a namespace's tables, or take it away (admins)."""
    if remove == bool(access):
        raise typer.BadParameter("give either --access read|write or --remove")
    with connect(url, api_key, api_key_file) as client:
        project_id = client.project(project)["id"]
        if remove:
            client.revoke_grant(project_id, namespace)
            result = {"namespace": namespace, "removed": True}
        else:
            result = client.grant(project_id, namespace, access)
    if as_json:
        print_json(result)
    elif remove:
        success(f"{project} no longer reaches namespace {namespace}")
    else:
        success(f"{project} may {access} namespace {namespace}")


@project_app.command("grants")
def project_grants(project: str, url: str | None = URL, api_key: str | None = KEY,
                   api_key_file: Path | None = KEY_FILE, as_json: bool = JSON) -> None:
    """List the namespaces a project may read or write."""
    with connect(url, api_key, api_key_file) as client:
        rows = client.list_grants(client.project(project)["id"])
    if as_json:
        print_json(rows)
    else:
        print_rows(rows, ["namespace", "access", "granted_by", "granted_at"])


def register(app: typer.Typer) -> None:
    """Add ``user`` and ``whoami`` to the root app (the project commands ride on
    ``icefloe project``)."""
    app.add_typer(user_app, name="user")
    app.command("whoami")(whoami)
