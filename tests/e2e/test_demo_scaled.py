"""The acceptance story on grown-up stores, as a team that outgrew one laptop runs it: one
PostgreSQL database (``database_url``) for the Iceberg catalog, MLflow and the platform DB,
and the warehouse and model artifacts on an S3-compatible object store."""

import json

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import run_cli
from tests.objectstore import SECRET_KEY
from tests.postgres import fresh_database

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1200)
def test_demo_on_postgres_and_object_storage(tmp_path, airflow_venv, object_store) -> None:
    bucket = object_store.bucket()
    with fresh_database("icefloe_demo") as url:
        home = tmp_path / "home"
        story = run_cli(["demo", "--rows", "2000", "--bad-rows", "500", "--airflow-venv",
                         str(airflow_venv)], home, timeout=1100,
                        env={"ICEFLOE_DATABASE_URL": url, **object_store.settings_env(bucket)})
        assert story.returncode == 0, story.stderr[-3000:] + story.stdout[-5000:]
        assert "Traceback" not in story.stderr
        summary = json.loads((home / "demo" / "summary.json").read_text())
        assert summary["dags"] == {"mlops_success": "success", "mlops_fail": "failed",
                                   "mlops_fail_fixed": "success"}
        assert summary["availability_percent"] == 100.0
        assert "fingerprint matches" in story.stdout
        assert "now serves loan-default/3 (zero-downtime switch)" in story.stdout
        # None of icefloe's stores is a SQLite file: each is a schema of the one database
        # (Airflow keeps its own metadata DB in its home).
        files = [p for p in home.rglob("*.db") if "airflow" not in p.parts]
        assert not files, files
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            counts = dict(conn.execute(text(
                "SELECT table_schema, count(*) FROM information_schema.tables "
                "WHERE table_schema LIKE 'icefloe_%' GROUP BY table_schema")).all())
            versions = conn.execute(text(
                "SELECT count(*) FROM icefloe_mlflow.model_versions")).scalar_one()
            snapshots_of = conn.execute(text(
                "SELECT count(*) FROM icefloe_catalog.iceberg_tables "
                "WHERE table_namespace = 'lending' AND table_name = 'loans'")).scalar_one()
            runs = conn.execute(text(
                "SELECT count(*) FROM icefloe_platform.runs")).scalar_one()
        engine.dispose()
        assert set(counts) == {"icefloe_catalog", "icefloe_mlflow", "icefloe_platform"}
        assert versions == 3 and snapshots_of == 1 and runs > 10
        # Tables and model artifacts are objects in the bucket, none on the local disk.
        keys = object_store.keys(bucket)
        assert any(k.startswith("warehouse/lending/loans/data/") for k in keys)
        assert any(k.startswith("mlartifacts/") and k.endswith("MLmodel") for k in keys)
        assert not list((home / "lake").rglob("*.parquet"))
        assert SECRET_KEY not in story.stdout + story.stderr
