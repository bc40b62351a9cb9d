"""Section 4 of ``bench/scale.py``: ``/model`` throughput through HAProxy with 1, 2 and 3
nodes (three ``icefloe up`` in multi-node mode on one PostgreSQL database and moto's S3
server, a model with a replica on each; the balancer lists the first 1, 2 or 3 of them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ICEFLOE = [sys.executable, "-m", "icefloe.cli.main"]
HAPROXY = """\
global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch 1
frontend icefloe
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri /api/v2/health
    default-server inter 1s fall 2 rise 1
{servers}
"""
SECONDS = 8.0
CLIENTS = 16


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _throughput(url: str, body: dict[str, Any], key: str) -> tuple[float, int]:
    """Calls per second answered 200 by CLIENTS concurrent callers, and the failures."""
    done, failed = [0] * CLIENTS, [0] * CLIENTS
    end = time.monotonic() + SECONDS

    def client(i: int) -> None:
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
            while time.monotonic() < end:
                try:
                    ok = c.post(url, json=body).status_code == 200
                except httpx.TransportError:
                    ok = False
                done[i] += ok
                failed[i] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / SECONDS, sum(failed)


def bench_nodes(counts: list[int], database_url: str, trained: Path, work: Path,
                table: Callable[[str, list[str], list[list[Any]]], None]) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        print("\nNodes: skipped (HAProxy missing: make balancer)")
        return
    name = f"icefloe_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    s3_port = _free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(s3_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _wait(f"http://127.0.0.1:{s3_port}/moto-api/")
        import boto3

        endpoint = f"http://127.0.0.1:{s3_port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                     aws_secret_access_key="bench-secret", region_name="us-east-1"
                     ).create_bucket(Bucket="lake")
        home = work / "nodes"
        home.mkdir()
        env = {**os.environ, "ICEFLOE_HOME": str(home), "ICEFLOE_MULTI_NODE": "true",
               "ICEFLOE_DATABASE_URL": database_url.rsplit("/", 1)[0] + f"/{name}",
               "ICEFLOE_WAREHOUSE": "s3://lake/warehouse",
               "ICEFLOE_MLFLOW_ARTIFACTS": "s3://lake/mlartifacts",
               "ICEFLOE_S3_ENDPOINT": endpoint, "ICEFLOE_S3_ACCESS_KEY_ID": "bench",
               "ICEFLOE_S3_SECRET_ACCESS_KEY": "bench-secret",
               "ICEFLOE_MONITOR_INTERVAL": "0"}
        key = json.loads(subprocess.run([*ICEFLOE, "init", "--json"], env=env, check=True,
                                        capture_output=True, text=True).stdout)["api_key"]
        from icefloe.config import load_settings
        from icefloe.demo.loans import generate_loans
        from icefloe.lakehouse import Lakehouse

        Lakehouse(load_settings(env=env)).write("lending.loans", generate_loans(2000, 3),
                                                "create")
        subprocess.run([*ICEFLOE, "train", "--table", "lending.loans", "--label",
                        "loan_status", "--positive", "Charged Off,Default", "--model",
                        "small"], env=env, check=True, capture_output=True)
        ports = [_free_port() for _ in range(max(counts))]
        for port in ports:
            procs.append(subprocess.Popen([*ICEFLOE, "up", "--port", str(port)], env=env,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        for port in ports:
            _wait(f"http://127.0.0.1:{port}/api/v2/health")
        api = httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}/api/v2", timeout=300,
                           headers={"Authorization": f"Bearer {key}"})
        build = api.post("/models/builds", json={"model": "small/1"}).json()
        dep = api.post("/models/deployments", json={"build_id": build["id"],
                                                    "replicas": len(ports)}).json()
        body = {"accessKey": dep["access_key"], "request": build["example_request"]}
        deadline = time.monotonic() + 120
        while sum(sum(r["ready"] for r in httpx.get(
                f"http://127.0.0.1:{p}/api/v2/models/deployments/{dep['id']}",
                headers={"Authorization": f"Bearer {key}"}).json()["replica_status"])
                for p in ports) < len(ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not spread over the nodes")
            time.sleep(0.5)
        rows, base = [], None
        for count in counts:
            lb = _free_port()
            config = work / f"haproxy-{count}.cfg"
            config.write_text(HAPROXY.format(port=lb, servers="\n".join(
                f"    server n{i} 127.0.0.1:{p} check" for i, p in enumerate(ports[:count]))))
            balancer = subprocess.Popen([haproxy, "-db", "-f", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _wait(f"http://127.0.0.1:{lb}/api/v2/health")
                _throughput(f"http://127.0.0.1:{lb}/model", body, key)  # warm-up
                rate, failed = _throughput(f"http://127.0.0.1:{lb}/model", body, key)
            finally:
                balancer.terminate()
                balancer.wait(timeout=10)
            base = base or rate
            rows.append([count, f"{rate:,.0f}", f"{rate / base:.2f}x", failed])
        table(f"Nodes: /model through HAProxy ({CLIENTS} callers, {SECONDS:g} s, "
              f"{os.cpu_count()} CPUs shared by all)",
              ["nodes", "calls/s", "vs 1 node", "failed"], rows)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        moto.terminate()
        moto.wait(timeout=10)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
