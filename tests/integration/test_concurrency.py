"""Concurrent appends from separate processes: every row lands exactly once."""

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from icefloe.config import Settings
from icefloe.lakehouse import Lakehouse

WRITER = r"""
import sys, time
import pyarrow as pa
from icefloe.config import load_settings
from icefloe.lakehouse import Lakehouse

home, writer, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lh = Lakehouse(load_settings(env={}, home=home))
rows = pa.table({"writer": pa.array([writer] * 1000, pa.int32()),
                 "seq": pa.array(range(1000), pa.int64())})
lh.catalog  # open the catalog before the start line so the appends really race
while time.time() < start_at:
    time.sleep(0.001)
result = lh.write("race.events", rows, "append")
print(result.snapshot.snapshot_id)
"""


def test_eight_processes_append_1000_rows_each(settings: Settings, tmp_path: Path) -> None:
    lh = Lakehouse(settings)
    seed = pa.table({"writer": pa.array([-1], pa.int32()), "seq": pa.array([0], pa.int64())})
    lh.write("race.events", seed, "create")
    start_at = time.time() + 4.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(settings.home), str(i), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    snapshot_ids = {out.strip() for out, _ in outputs}
    assert len(snapshot_ids) == 8  # one commit per writer

    counts = lh.sql(
        "SELECT writer, count(*) AS n, count(DISTINCT seq) AS d FROM race.events "
        "GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    assert counts == [{"writer": -1, "n": 1, "d": 1}] + [
        {"writer": i, "n": 1000, "d": 1000} for i in range(8)
    ]
    assert lh.current_snapshot("race.events").total_rows == 8001
    assert len(lh.snapshots("race.events")) == 9
