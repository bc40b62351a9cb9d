"""One PostgreSQL database for every store (``database_url``): the catalog, MLflow and the
platform DB each in a schema of their own, and job runs in a role of their own that reaches
the catalog and MLflow but not the platform's keys."""

import json
import uuid
from pathlib import Path

import pyarrow as pa
from sqlalchemy import create_engine, text

from icefloe.config import load_settings
from icefloe.lakehouse import Lakehouse
from icefloe.registry.mlflow_registry import ModelRegistry
from tests import postgres
from tests.integration.test_control_plane import running
from tests.postgres import fresh_database

JOB = r'''
import json, os
import psycopg
import pyarrow as pa
from icefloe.lakehouse import Lakehouse

Lakehouse().write("lending.from_job", pa.table({"id": [1, 2, 3]}), mode="create")
out = {"catalog_uri": os.environ["ICEFLOE_CATALOG_URI"]}
url = os.environ["ICEFLOE_CATALOG_URI"].replace("postgresql+psycopg", "postgresql")
with psycopg.connect(url.split("?")[0]) as conn:
    for name, sql in (("keys", "SELECT count(*) FROM icefloe_platform.api_keys"),
                      ("grants", "UPDATE icefloe_platform.users SET role = 'admin'")):
        try:
            conn.execute(sql)
            out[name] = "allowed"
        except psycopg.Error as exc:
            out[name] = type(exc).__name__
        conn.rollback()
print("OUT", json.dumps(out))
'''


def test_every_store_in_its_schema_and_jobs_kept_out_of_the_platform(tmp_path: Path) -> None:
    role = f"jobs_{uuid.uuid4().hex[:8]}"
    try:
        _one_database(tmp_path, role)
    finally:  # roles outlive databases: drop it once its database is gone
        with postgres.admin().connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


def _one_database(tmp_path: Path, role: str) -> None:
    with fresh_database("icefloe_one") as url:
        admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
        jobs_url = url.replace("://postgres@", f"://{role}@", 1)
        assert jobs_url != url, "the test PostgreSQL URL names its user: postgres"
        home = tmp_path / "home"
        home.mkdir()
        (home / "config.toml").write_text(
            f'[icefloe]\ndatabase_url = "{url}"\njob_database_url = "{jobs_url}"\n')
        settings = load_settings(env={}, home=home)
        assert not settings.jobs_reach_platform_db()
        # What a DBA grants the jobs' role: the catalog's and MLflow's schemas only.
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            for schema in ("icefloe_catalog", "icefloe_mlflow"):
                conn.execute(text(f"CREATE SCHEMA {schema}"))
                conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA {schema} TO "{role}"'))
                for kind in ("TABLES", "SEQUENCES"):
                    conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL "
                                      f'ON {kind} TO "{role}"'))
        Lakehouse(settings).write("lending.loans", pa.table({"id": [1]}), mode="create")
        ModelRegistry(settings).experiment_id("made-by-the-server")

        for cp in running(home):
            p = cp.project("one")
            (Path(cp.client.get(f"/projects/{p}").json()["path"]) / "job.py").write_text(JOB)
            job = cp.job(p, "spy", "job.py")
            done = cp.wait(p, job, cp.run(p, job), timeout=120)
            log = cp.client.get(f"/projects/{p}/jobs/{job}/runs/{done['id']}/logs"
                                ).json()["content"]
            assert done["status"] == "ENGINE_SUCCEEDED", log[-3000:]
            out = json.loads(log.split("OUT ", 1)[1].splitlines()[0])
            assert out["catalog_uri"].startswith(f"postgresql+psycopg://{role}@")
            assert out["keys"] == out["grants"] == "InsufficientPrivilege"
            # The server's stores saw the job's table; each store kept to its schema.
            assert Lakehouse(settings).read("lending.from_job").num_rows == 3
            with admin.connect() as conn:
                tables = {(s, t) for s, t in conn.execute(text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"))}
        schemas = {s for s, _ in tables}
        assert schemas == {"icefloe_catalog", "icefloe_mlflow", "icefloe_platform"}, schemas
        assert ("icefloe_catalog", "iceberg_tables") in tables
        assert ("icefloe_mlflow", "experiments") in tables
        assert ("icefloe_platform", "api_keys") in tables
        assert ("icefloe_platform", "alembic_version") in tables
        assert ("icefloe_mlflow", "alembic_version") in tables
        admin.dispose()
