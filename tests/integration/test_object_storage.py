"""Tables and model artifacts on an S3-compatible object store (a real server on 127.0.0.1:
moto's, started by the test set-up), reached by PyIceberg, Spark and MLflow alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from icefloe.config import load_settings
from icefloe.lakehouse import Lakehouse
from icefloe.storage import is_s3
from tests.conftest import run_cli
from tests.objectstore import SECRET_KEY

SPARK_SIDE = r'''
import json, sys
from icefloe.compute import read_table, spark_session, write_table
from icefloe.config import load_settings
from icefloe.lakehouse import Lakehouse

settings = load_settings()
spark = spark_session(settings, master="local[2]")
out = {"pyiceberg_rows_in_spark_sql": spark.sql(
    "SELECT count(*) FROM icefloe.lending.loans").first()[0]}
spark.sql("CREATE TABLE icefloe.lending.staging USING iceberg AS "
          "SELECT id + 1000 AS id, grade FROM icefloe.lending.loans WHERE grade = 'A'")
spark.sql("INSERT INTO icefloe.lending.loans SELECT * FROM icefloe.lending.staging")
df = read_table(spark, "lending.loans")                       # the bridge, over S3A
out["bridge_rows"] = df.count()
out["input_files"] = sorted({f.split("://")[0] for f in df.inputFiles()})
write_table(df.filter("grade = 'B'"), "lending.b_only", mode="create")
out["written"] = Lakehouse(settings).read("lending.b_only").num_rows
# The JVM pyspark started: its command line (what `ps` shows anyone) has no secret.
import os
lines = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid():
            lines.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
    except OSError:
        pass
out["jvms"] = sum("java" in line for line in lines)
out["secret_in_ps"] = any(settings.s3_secret_access_key in line for line in lines)
print("OUT " + json.dumps(out))
'''


def test_tables_live_in_the_bucket_and_every_reader_agrees(object_store, tmp_path: Path
                                                           ) -> None:
    bucket = object_store.bucket()
    env = object_store.settings_env(bucket)
    home = tmp_path / "home"
    settings = load_settings(env=env, home=home)
    assert is_s3(settings.warehouse_path)
    lh = Lakehouse(settings)
    first = lh.write("lending.loans", pa.table({"id": list(range(100)),
                                                "grade": ["A", "B"] * 50}), "create")
    lh.write("lending.loans", pa.table({"id": [500], "grade": ["C"]}), "append")
    assert lh.read("lending.loans").num_rows == 101
    assert lh.read("lending.loans", snapshot_id=first.snapshot.snapshot_id).num_rows == 100
    counted = lh.sql("SELECT grade, count(*) AS n FROM lending.loans GROUP BY grade "
                     "ORDER BY grade").to_pylist()
    assert counted == [{"grade": "A", "n": 50}, {"grade": "B", "n": 50},
                       {"grade": "C", "n": 1}]
    keys = object_store.keys(bucket, "warehouse/lending/loans/")
    assert sum(k.endswith(".parquet") for k in keys) == 2
    assert any(k.endswith(".metadata.json") for k in keys)
    assert not (home / "lake" / "warehouse").exists()  # nothing on the local disk

    # Spark, in a process of its own (its JVM is configured at start): Iceberg's runtime
    # reads what PyIceberg wrote and INSERTs into it; the bridge reads over S3A.
    proc = subprocess.run([sys.executable, "-c", SPARK_SIDE], capture_output=True,
                          text=True, timeout=300, env={**_process_env(), **env,
                                                       "ICEFLOE_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("OUT ", 1)[1])
    assert out["pyiceberg_rows_in_spark_sql"] == 101
    assert out["bridge_rows"] == 151 and out["input_files"] == ["s3"]
    assert out["written"] == 50
    assert out["jvms"] == 1 and out["secret_in_ps"] is False
    assert lh.current_snapshot("lending.loans").added_rows == 50  # Spark's INSERT, seen
    assert SECRET_KEY not in proc.stdout + proc.stderr

    rolled = lh.rollback("lending.loans", first.snapshot.snapshot_id)
    assert rolled is not None and lh.read("lending.loans").num_rows == 100
    shown = run_cli(["doctor", "--json"], home, env=env)
    assert SECRET_KEY not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["settings"]["s3_secret_access_key"]["value"] == "***"


def _process_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_")}
