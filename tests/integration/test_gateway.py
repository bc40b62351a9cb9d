"""The gateway's answers when no replica can take a call: 503 after waiting or after too many
failed replicas, 429 when full."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icefloe.errors import BusyError, UnavailableError
from icefloe.serving.gateway import MAX_ATTEMPTS, MAX_INFLIGHT, forward
from icefloe.serving.protocol import PREDICT
from icefloe.serving.supervisor import Replica, Route


def test_no_ready_replica_waits_then_503_and_a_full_one_is_429(tmp_path: Path) -> None:
    route = Route("dep-1", "m", True, 1, "b1", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="dep-1 has no ready replica"):
        asyncio.run(forward(route, PREDICT, b"{}", wait=0.3))
    assert time.monotonic() - started >= 0.3

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        full = Replica("r1", "b1", str(tmp_path / "r1.sock"), proc, tmp_path / "r1.log",
                       ready=True, inflight=MAX_INFLIGHT)
        route.replicas = (full,)
        with pytest.raises(BusyError, match="dep-1 is busy"):
            asyncio.run(forward(route, PREDICT, b"{}", wait=0.3))
        assert full.inflight == MAX_INFLIGHT  # nothing leaked

        broken = Replica("r2", "b1", str(tmp_path / "missing.sock"), proc,
                         tmp_path / "r2.log", ready=True)
        route.replicas = (broken,)
        with pytest.raises(UnavailableError, match=f"{MAX_ATTEMPTS} replicas failed"):
            asyncio.run(forward(route, PREDICT, b"{}", wait=0.3))
        assert broken.inflight == 0
    finally:
        proc.kill()
        proc.wait()
