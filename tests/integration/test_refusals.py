"""An anonymous flood cannot grow the audit log, and a source that keeps failing is slowed."""

import re
import signal
import time

import httpx

from icefloe.auth.refusals import Refusals
from tests.integration.test_control_plane import ControlPlane


def test_refusals_are_counted_per_source_and_minute_then_slowed(tmp_path) -> None:
    cp = ControlPlane(tmp_path / "home")
    cp.start()
    try:
        assert cp.client.get("/projects").status_code == 200  # the admin key is now cached
        # Refusals are counted per minute: start where all 75 fit in one, even on a busy
        # machine.
        while time.time() % 60 > 30:
            time.sleep(0.5)
        statuses = []
        for i in range(75):
            r = httpx.get(f"{cp.url}/projects", headers={"Authorization": f"Bearer bad{i}"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert "retry after" in r.json()["error"]["message"]
        assert statuses[:60] == [401] * 60 and set(statuses[60:]) == {429}
        model = httpx.post(f"{cp.url.removesuffix('/api/v2')}/model",
                           json={"accessKey": "mnope", "request": {}})
        assert model.status_code == 429  # the same source, on the model path too
        # A key already known to be good still works from that address.
        assert cp.client.get("/projects").status_code == 200
        cp.stop(signal.SIGTERM)  # written at shutdown (or when the minute ends)
        cp.start()
        events = cp.client.get("/audit", params={"page_size": 1000}).json()["events"]
    finally:
        cp.stop()
    refused = [e for e in events if e["action"].endswith(".refused")]
    assert refused and len(refused) <= 2, refused  # one row a minute, not one per request
    assert {e["target"] for e in refused} == {"source/127.0.0.1"}
    counted = sum(int(re.match(r"(\d+) refused", e["detail"]).group(1)) for e in refused)
    assert counted == 60


def test_sources_beyond_the_bound_share_one_row() -> None:
    refusals = Refusals(limit=0)
    for i in range(1500):
        refusals.count(f"10.0.{i // 256}.{i % 256}", "auth")
    rows = refusals.due(everything=True)
    assert len(rows) == 1001
    other = next(r for r in rows if r["target"] == "source/other")
    assert other["detail"] == "500 refused in this minute"
    assert refusals.retry_after("10.0.0.1") == 0  # limit 0: never slowed down
    assert refusals.due(everything=True) == []
