"""The HTML report is self-contained and escapes what comes from data."""

import pyarrow as pa

from icefloe.monitoring.report import over_time, render

HOSTILE = '<script>alert("x")</script>'


def _result() -> dict:
    return {"deployment": "d-1", "model": HOSTILE, "model_version": 1, "build": "b",
            "window": "1h", "start_ms": 0, "end_ms": 3_600_000, "min_samples": 100,
            "reference": {"table": "t.x", "snapshot_id": 1, "fingerprint": "fp1:a"},
            "figures": [{"metric": "psi", "feature": HOSTILE, "value": 0.4, "samples": 500,
                         "status": "ok", "reading": "significant"},
                        {"metric": "accuracy", "feature": "", "value": None, "samples": 3,
                         "status": "insufficient"}],
            "aggregates": [{"start_ms": 0, "end_ms": 10, "metrics": {"accuracy": HOSTILE}}]}


def test_buckets_count_requests_truth_and_latency() -> None:
    rows = pa.table({"timestamp_ms": [0, 10, 1_800_000, 3_599_999],
                     "truth": [1.0, None, 0.0, 1.0], "score": [0.9, 0.2, 0.7, 0.1],
                     "latency_ms": [1.0, 3.0, 2.0, 4.0]})
    points = over_time(rows, 0, 3_600_000, buckets=4)
    assert [p["requests"] for p in points] == [2, 0, 1, 1]
    assert points[0]["label_coverage"] == 0.5 and points[0]["accuracy"] == 1.0
    assert points[2]["accuracy"] == 0.0 and points[1]["accuracy"] is None
    assert points[0]["latency_p50_ms"] == 2.0


def test_the_page_is_self_contained_and_escapes_data() -> None:
    rows = pa.table({"timestamp_ms": [0, 5], "truth": [1.0, 0.0], "score": [0.9, 0.1],
                     "latency_ms": [1.0, 2.0]})
    page = render(_result(), over_time(rows, 0, 3_600_000))
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page and " src=" not in page
    assert page.count("<svg") == 3 and "significant" in page and "insufficient" in page
