"""Scale benchmark: cost curves, each printed as a table, with a peer measured in the same run.

1. Tables: load, time travel (read the first snapshot) and rollback at 10k, 1M and 10M
   rows (rollback moves a pointer: it must stay flat). Peer: DuckDB reading the same
   Parquet files (the floor for time travel).
2. Models: total resident memory (the control plane and every process under it) and p99
   of ``/model`` calls spread over 1, 10 and 100 deployed models, each a build of its own,
   served by two shared model hosts (``model_hosts = 2``). Peer: the same with a process
   per deployment (the default), at 1 and 10 models (``--dedicated 100`` adds 100).
3. Drift sweep: one monitoring evaluation over every deployment (1, 10, 100), each with
   the predictions the latency calls left.
4. Nodes: ``/model`` throughput through HAProxy with 1, 2 and 3 nodes (needs PostgreSQL:
   ``--database-url`` or ``$ICEFLOE_TEST_POSTGRES_URL``; the S3 server is moto's, started
   here). See ``bench/scale_nodes.py``.

Usage: python bench/scale.py [--rows 10000,1000000,10000000] [--models 1,10,100]
       [--dedicated 1,10] [--calls 1000] [--skip tables,models,nodes] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ICEFLOE = [sys.executable, "-m", "icefloe.cli.main"]


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print one cost curve as a table."""
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for line in (header, ["-" * w for w in widths], *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(line, widths, strict=False)))
    sys.stdout.flush()


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo += children.get(p, [])
    return total / 1024


# -- 1. tables ---------------------------------------------------------------------------


def bench_tables(sizes: list[int], work: Path) -> None:
    import duckdb

    from icefloe.config import load_settings
    from icefloe.lakehouse import Lakehouse

    rows_out = []
    for n in sizes:
        lh = Lakehouse(load_settings(env={}, home=work / f"tables-{n}"))
        rng = np.random.default_rng(n)
        data = pa.table({"id": np.arange(n, dtype=np.int64),
                         "amount": rng.normal(1000, 300, n),
                         "grade": pa.array(rng.integers(0, 7, n)).cast(pa.string())})
        started = time.perf_counter()
        first = lh.write("bench.rows", data, "create")
        load_s = time.perf_counter() - started
        lh.write("bench.rows", data.slice(0, 1000), "append")
        started = time.perf_counter()
        back = lh.read("bench.rows", snapshot_id=first.snapshot.snapshot_id)
        travel_s = time.perf_counter() - started
        assert back.num_rows == n
        old = [t.file.file_path.removeprefix("file://") for t in lh.table("bench.rows").scan(
            snapshot_id=first.snapshot.snapshot_id).plan_files()]
        started = time.perf_counter()
        duckdb.sql(f"SELECT * FROM read_parquet({old!r})").arrow()
        peer_s = time.perf_counter() - started
        started = time.perf_counter()
        lh.rollback("bench.rows", first.snapshot.snapshot_id)
        rollback_ms = (time.perf_counter() - started) * 1000
        assert lh.current_snapshot("bench.rows").total_rows == n
        rows_out.append([f"{n:,}", f"{load_s:.2f}", f"{travel_s:.2f}", f"{peer_s:.2f}",
                         f"{travel_s / max(peer_s, 1e-9):.1f}x", f"{rollback_ms:.0f}"])
    table("Tables (PyIceberg on local files, SQLite catalog)",
          ["rows", "load s", "time travel s", "DuckDB read s", "vs DuckDB", "rollback ms"],
          rows_out)


# -- 2 and 3. models and the drift sweep ----------------------------------------------------


class Plane:
    """An ``icefloe up`` in its own home."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = {**os.environ, "ICEFLOE_HOME": str(home), **env}
        init = subprocess.run([*ICEFLOE, "init", "--json"], env=self.env, check=True,
                              capture_output=True, text=True)
        self.key = json.loads(init.stdout)["api_key"]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*ICEFLOE, "up", "--port", str(self.port)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.api = httpx.Client(base_url=f"{self.url}/api/v2", timeout=300,
                                headers={"Authorization": f"Bearer {self.key}"})
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.api.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("control plane did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trained_home(work: Path) -> Path:
    """A home with one trained model (copied for each run of section 2)."""
    from icefloe.config import load_settings
    from icefloe.demo.loans import generate_loans
    from icefloe.lakehouse import Lakehouse

    home = work / "trained"
    if (home / "lake").exists():
        return home
    settings = load_settings(env={}, home=home)
    Lakehouse(settings).write("lending.loans", generate_loans(2000, 3), "create")
    subprocess.run([*ICEFLOE, "train", "--table", "lending.loans", "--label", "loan_status",
                    "--positive", "Charged Off,Default", "--model", "small"],
                   env={**os.environ, "ICEFLOE_HOME": str(home)}, check=True,
                   capture_output=True)
    return home


def bench_models(counts: list[int], dedicated: list[int], calls: int, work: Path) -> None:
    source = trained_home(work)
    memory_rows, sweep_rows = [], []
    for hosts in (2, 0):
        wanted = counts if hosts else dedicated
        if not wanted:
            continue
        home = work / f"models-{hosts}"
        shutil.copytree(source, home, dirs_exist_ok=True)
        plane = Plane(home, {"ICEFLOE_MODEL_HOSTS": str(hosts),
                             "ICEFLOE_MONITOR_INTERVAL": "0"})
        try:
            base_rss = tree_rss_mb(plane.proc.pid)
            deployed: list[dict[str, Any]] = []
            example = None
            for count in wanted:
                while len(deployed) < count:
                    build = plane.api.post("/models/builds", json={"model": "small/1"}).json()
                    assert build["status"] == "BUILD_READY", build
                    example = example or build["example_request"]
                    made = plane.api.post("/models/deployments", json={
                        "build_id": build["id"]})
                    assert made.status_code == 201, made.text
                    deployed.append(made.json())
                latencies = []
                with httpx.Client(timeout=60, headers={
                        "Authorization": f"Bearer {plane.key}"}) as client:
                    for i in range(calls):
                        dep = deployed[i % len(deployed)]
                        started = time.perf_counter()
                        r = client.post(f"{plane.url}/model", json={
                            "accessKey": dep["access_key"], "request": example})
                        latencies.append((time.perf_counter() - started) * 1000)
                        assert r.status_code == 200, r.text
                rss = tree_rss_mb(plane.proc.pid)
                p99 = statistics.quantiles(latencies, n=100)[98]
                memory_rows.append([
                    f"{hosts} shared hosts" if hosts else "a process each", count,
                    f"{rss:,.0f}", f"{(rss - base_rss) / count:,.1f}",
                    f"{statistics.median(latencies):.1f}", f"{p99:.1f}",
                    "yes" if rss < 4096 else "NO"])
                if hosts:
                    sweep_rows.append([count, *sweep_seconds(home)])
        finally:
            plane.stop()
    table("Models: memory and latency (calls spread over every deployed model)",
          ["serving", "models", "total RSS MB", "MB per model", "p50 ms", "p99 ms",
           "< 4 GB"], memory_rows)
    table("Drift sweep: one monitoring evaluation over every deployment",
          ["deployments", "predictions", "sweep s"], sweep_rows)


def sweep_seconds(home: Path) -> list[Any]:
    """Time one evaluation of every serving deployment (what the monitor thread does)."""
    from sqlalchemy import func, select

    from icefloe.config import load_settings
    from icefloe.lakehouse import Lakehouse
    from icefloe.monitoring.alerts import evaluate
    from icefloe.store.db import Database
    from icefloe.store.orm import Prediction

    settings = load_settings(env={}, home=home)
    db = Database(settings.resolved_platform_db_url)
    time.sleep(2)  # the prediction log writes what the calls left
    with db.session() as s:
        predictions = s.scalar(select(func.count()).select_from(Prediction))
    started = time.perf_counter()
    evaluate(db, Lakehouse(settings), settings)
    took = time.perf_counter() - started
    db.dispose()
    return [f"{predictions:,}", f"{took:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,1000000,10000000")
    parser.add_argument("--models", default="1,10,100")
    parser.add_argument("--dedicated", default="1,10")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--database-url", default=os.environ.get("ICEFLOE_TEST_POSTGRES_URL",
                                                                 ""))
    parser.add_argument("--skip", default="", help="comma list: tables,models,nodes")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="icefloe-scale-"))
    print(f"work folder: {work}; {os.cpu_count()} CPUs")
    try:
        if "tables" not in skip:
            bench_tables([int(x) for x in args.rows.split(",") if x], work)
        if "models" not in skip:
            bench_models([int(x) for x in args.models.split(",") if x],
                         [int(x) for x in args.dedicated.split(",") if x], args.calls, work)
        if "nodes" not in skip:
            sys.path.insert(0, str(Path(__file__).parent))
            from scale_nodes import bench_nodes

            if not args.database_url:
                print("\nNodes: skipped (give --database-url or ICEFLOE_TEST_POSTGRES_URL)")
            else:
                bench_nodes([int(x) for x in args.nodes.split(",") if x], args.database_url,
                            trained_home(work), work, table)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
