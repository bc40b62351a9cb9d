"""CML's ``cdsw`` model-metrics functions, under their own names and signatures.

A script written for Cloudera Machine Learning runs with its import line changed::

    import icefloe.cdsw as cdsw

    answer = cdsw.call_model(access_key, {"annual_inc": 65000, ...})
    cdsw.track_delayed_metrics({"final_label": 1}, answer["response"]["uuid"])
    cdsw.track_aggregate_metrics({"accuracy": 0.91}, start_ms, end_ms,
                                 model_deployment_crn=deployment_id)
    rows = cdsw.read_metrics(model_deployment_crn=deployment_id)["metrics"]

The functions talk to the control plane through the SDK, configured from the environment
(``ICEFLOE_URL`` and ``ICEFLOE_API_KEY``, which a job run has: its own short-lived token).
``track_metric`` attaches a value to the prediction being answered, inside scoring code, as
in CML. A deployment id is what CML calls a model deployment CRN.
"""

from __future__ import annotations

import threading
from typing import Any

from icefloe.client import Client
from icefloe.errors import InvalidInputError
from icefloe.serving.tracking import track_metric

__all__ = ["call_model", "read_metrics", "track_aggregate_metrics", "track_delayed_metrics",
           "track_metric"]

_client: Client | None = None
_lock = threading.Lock()


def _sdk() -> Client:
    """One client per process, made on first use from the environment."""
    global _client
    with _lock:
        if _client is None:
            _client = Client()
        return _client


def call_model(model_access_key: str, ipt: dict[str, Any]) -> dict[str, Any]:
    """Score one record: ``{"success": True, "response": {"prediction", "probability",
    "uuid", ...}}``."""
    return _sdk().call_model(model_access_key, ipt)


def track_delayed_metrics(metrics: dict[str, Any], prediction_uuid: str) -> dict[str, Any]:
    """Attach metrics that arrive later (ground truth, as ``final_label``) to a prediction."""
    return _sdk().track_delayed_metrics(metrics, prediction_uuid)


def track_aggregate_metrics(metrics: dict[str, Any], start_timestamp_ms: int,
                            end_timestamp_ms: int, model_deployment_crn: str | None = None
                            ) -> dict[str, Any]:
    """Keep metrics about a window of a deployment's predictions (e.g. accuracy per 100).

    Raises:
        InvalidInputError: No ``model_deployment_crn`` (CML needs it too).
    """
    if not model_deployment_crn:
        raise InvalidInputError("track_aggregate_metrics needs model_deployment_crn (the "
                                "deployment id)")
    return _sdk().track_aggregate_metrics(metrics, start_timestamp_ms, end_timestamp_ms,
                                          model_deployment_crn)


def read_metrics(model_crn: str | None = None, model_deployment_crn: str | None = None,
                 start_timestamp_ms: int = 0, end_timestamp_ms: int | None = None
                 ) -> dict[str, Any]:
    """A deployment's predictions with their tracked and delayed metrics, then the aggregate
    metrics of the window: ``{"metrics": [...]}``.

    ``model_crn`` is accepted for CML's signature; the deployment says which model it is.

    Raises:
        InvalidInputError: No ``model_deployment_crn``.
    """
    if not model_deployment_crn:
        raise InvalidInputError("read_metrics needs model_deployment_crn (the deployment id)"
                                + (f"; model_crn {model_crn!r} alone does not name one"
                                   if model_crn else ""))
    return _sdk().read_metrics(model_deployment_crn, start_timestamp_ms, end_timestamp_ms)
