"""Spark on Iceberg natively: Iceberg's own Spark runtime over the catalog database PyIceberg
uses, both ways: PyIceberg writes and Spark SQL reads; Spark SQL inserts, rolls back and
travels in time and PyIceberg (and `icefloe table snapshots`) sees it."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from icefloe.compute import jars
from icefloe.compute.native import jdbc_of, spark_iceberg
from icefloe.config import ConfigError, load_settings
from icefloe.lakehouse import Lakehouse
from tests.conftest import run_cli

pytestmark = pytest.mark.spark


def _native_catalog(spark: object, home: Path) -> tuple[str, Lakehouse]:
    """A home whose catalog the session reaches natively (a catalog of its own name)."""
    if jars.present() is None:
        if os.environ.get("CI"):
            pytest.fail("Iceberg's Spark runtime was not fetched by make install")
        pytest.skip("Iceberg's Spark runtime is not fetched (python -m icefloe.compute.jars)")
    name = f"t{uuid.uuid4().hex[:8]}"
    settings = load_settings(env={}, home=home, catalog_name=name)
    reach = spark_iceberg(settings)
    assert reach.native, reach.reason
    for key, value in reach.config.items():
        if key.startswith(f"spark.sql.catalog.{name}"):  # jars and extensions: at start
            spark.conf.set(key, value)  # type: ignore[attr-defined]
    return name, Lakehouse(settings)


def test_pyiceberg_and_spark_sql_share_one_catalog_both_ways(spark, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cat, lh = _native_catalog(spark, home)
    t = f"{cat}.lending.loans"
    first = lh.write("lending.loans", pa.table({"id": list(range(100)),
                                                "grade": ["A", "B"] * 50}), "create")
    # PyIceberg wrote, Spark SQL reads the same rows.
    assert spark.sql(f"SELECT count(*) FROM {t}").first()[0] == 100
    # Spark SQL writes a staging table and inserts it, as the seed's ETL does.
    spark.sql(f"CREATE TABLE {cat}.lending.staging USING iceberg AS "
              f"SELECT id + 1000 AS id, grade FROM {t} WHERE grade = 'A' LIMIT 25")
    spark.sql(f"INSERT INTO {t} SELECT * FROM {cat}.lending.staging")
    assert lh.read("lending.staging").num_rows == 25  # a table Spark made, read by PyIceberg
    current = lh.current_snapshot("lending.loans")
    assert current.total_rows == 125 and current.added_rows == 25
    listed = run_cli(["table", "snapshots", "lending.loans", "--json"], home, check=True,
                     env={"ICEFLOE_CATALOG_NAME": cat})
    by_id = {s["snapshot_id"]: s for s in json.loads(listed.stdout)}
    assert by_id[current.snapshot_id]["added_rows"] == 25
    assert by_id[current.snapshot_id]["current"] is True
    # Spark's rollback procedure moves the table for PyIceberg too; time travel reads both.
    spark.sql(f"CALL {cat}.system.rollback_to_snapshot('lending.loans', "
              f"{first.snapshot.snapshot_id})")
    assert lh.current_snapshot("lending.loans").snapshot_id == first.snapshot.snapshot_id
    assert spark.sql(f"SELECT count(*) FROM {t}").first()[0] == 100
    assert spark.sql(f"SELECT count(*) FROM {t} VERSION AS OF {current.snapshot_id}"
                     ).first()[0] == 125
    # And a PyIceberg rollback is what Spark's next query sees.
    lh.rollback("lending.loans", current.snapshot_id)
    assert spark.sql(f"SELECT count(*) FROM {t}").first()[0] == 125


def test_how_spark_reaches_tables_is_a_setting(tmp_path: Path) -> None:
    assert jdbc_of("sqlite:////var/x/catalog.db") == ("jdbc:sqlite:/var/x/catalog.db", "", "")
    assert jdbc_of("postgresql+psycopg://ice:pw@db:5433/lake") == (
        "jdbc:postgresql://db:5433/lake", "ice", "pw")
    assert jdbc_of("mysql://x@y/z") is None
    home = tmp_path / "home"
    bridge = spark_iceberg(load_settings(env={}, home=home, spark_iceberg="bridge"))
    assert not bridge.native and bridge.config == {}
    none_here = spark_iceberg(load_settings(env={}, home=home), available=None if
                              jars.present() else [])
    assert none_here.native == bool(jars.present())
    with pytest.raises(ConfigError, match="not fetched"):
        spark_iceberg(load_settings(env={}, home=home, spark_iceberg="native"), available=[])
    with pytest.raises(ConfigError, match="spark_iceberg must be one of"):
        spark_iceberg(load_settings(env={}, home=home, spark_iceberg="fast"))
    native = spark_iceberg(load_settings(env={}, home=home, catalog_name="lake",
                                         catalog_uri="postgresql://ice:pw@db/lake"),
                           available=[Path("/j/a.jar")])
    assert native.config["spark.sql.catalog.lake.uri"] == "jdbc:postgresql://db/lake"
    assert native.config["spark.sql.catalog.lake.jdbc.password"] == "pw"
    assert native.config["spark.sql.catalog.lake.cache-enabled"] == "false"
    doctor = run_cli(["doctor", "--json"], home)
    assert json.loads(doctor.stdout)["spark_iceberg"]["path"] in ("native", "bridge")


ETL = """
from icefloe.compute import spark_session
from icefloe.config import load_settings

settings = load_settings()
spark = spark_session(settings, app_name="native-etl")
cat = settings.catalog_name
spark.sql(f"CREATE TABLE {cat}.lending.staging USING iceberg AS "
          f"SELECT id + 1000 AS id, grade FROM {cat}.lending.loans LIMIT 10")
spark.sql(f"INSERT INTO {cat}.lending.loans SELECT * FROM {cat}.lending.staging")
print("inserted", spark.sql(f"SELECT count(*) FROM {cat}.lending.loans").first()[0], flush=True)
"""


def test_a_spark_job_inserts_with_icebergs_own_runtime(tmp_path: Path) -> None:
    from tests.integration.test_control_plane import ControlPlane

    if jars.present() is None:
        if os.environ.get("CI"):
            pytest.fail("Iceberg's Spark runtime was not fetched by make install")
        pytest.skip("Iceberg's Spark runtime is not fetched (python -m icefloe.compute.jars)")
    home = tmp_path / "home"
    cp = ControlPlane(home)
    lh = Lakehouse(load_settings(env={}, home=home))
    lh.write("lending.loans", pa.table({"id": list(range(40)), "grade": ["A", "B"] * 20}),
             "create")
    cp.start()
    try:
        project = cp.project("etl")
        folder = Path(cp.client.get(f"/projects/{project}").json()["path"])
        (folder / "etl.py").write_text(ETL)
        job = cp.job(project, "NativeETL", "etl.py", kernel="spark", timeout=600)
        run = cp.wait(project, job, cp.run(project, job), timeout=300)
        log = cp.client.get(f"/projects/{project}/jobs/{job}/runs/{run['id']}/logs").json()
    finally:
        cp.stop()
    assert run["status"] == "ENGINE_SUCCEEDED", log["content"][-3000:]
    assert "inserted 50" in log["content"]
    snaps = json.loads(run_cli(["table", "snapshots", "lending.loans", "--json"], home,
                               check=True).stdout)
    newest = max(snaps, key=lambda s: s["timestamp_ms"])
    assert newest["current"] and newest["added_rows"] == 10 and newest["total_rows"] == 50
