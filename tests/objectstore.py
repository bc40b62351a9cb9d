"""A real S3-compatible server for the tests: moto's server (from PyPI) on 127.0.0.1, in a
process of its own, so every process of a test (CLI, control plane, job runs, Spark's JVM)
reaches the same buckets over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ACCESS_KEY = "icefloe-test"
SECRET_KEY = "icefloe-test-secret-d41d8cd98f00"  # noqa: S105 - a throwaway server's


@dataclass(frozen=True)
class ObjectStore:
    """A running server: its endpoint and how to reach it."""

    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def bucket(self) -> str:
        """A new empty bucket."""
        name = f"lake-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def settings_env(self, bucket: str) -> dict[str, str]:
        """ICEFLOE_* variables putting a home's warehouse and artifacts in ``bucket``."""
        return {"ICEFLOE_WAREHOUSE": f"s3://{bucket}/warehouse",
                "ICEFLOE_MLFLOW_ARTIFACTS": f"s3://{bucket}/mlartifacts",
                "ICEFLOE_S3_ENDPOINT": self.endpoint, "ICEFLOE_S3_ACCESS_KEY_ID": ACCESS_KEY,
                "ICEFLOE_S3_SECRET_ACCESS_KEY": SECRET_KEY}


def run_server(log: Path) -> Iterator[ObjectStore]:
    """Start moto's server on a free port of 127.0.0.1; stop it afterwards."""
    from tests.servers import free_port

    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"moto's S3 server did not start:\n"
                                         f"{log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield ObjectStore(endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
