"""Airflow provider for icefloe: a hook over its REST API, a job-run operator and a SQL
operator (the CML/CDE job and CDW roles of a Cloudera pipeline)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

CONNECTION_FORM: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "extra"],
    "relabeling": {"host": "icefloe URL", "password": "API key"},
    "placeholders": {"host": "http://127.0.0.1:8080", "password": "ifk_..."},
}


def get_provider_info() -> dict[str, Any]:
    """What Airflow's provider manager reads (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-icefloe",
        "name": "icefloe",
        "description": "Run icefloe platform jobs and lakehouse SQL from Airflow.",
        "versions": [__version__],
        "integrations": [{"integration-name": "icefloe", "tags": ["service"]}],
        "hooks": [{"integration-name": "icefloe",
                   "python-modules": ["icefloe_provider.hooks.icefloe"]}],
        "operators": [{"integration-name": "icefloe",
                       "python-modules": ["icefloe_provider.operators.jobs",
                                          "icefloe_provider.operators.sql"]}],
        "triggers": [{"integration-name": "icefloe",
                      "python-modules": ["icefloe_provider.triggers.runs"]}],
        "extra-links": ["icefloe_provider.operators.jobs.IcefloeRunLink"],
        "connection-types": [{
            "hook-class-name": "icefloe_provider.hooks.icefloe.IcefloeHook",
            "hook-name": "icefloe",
            "connection-type": "icefloe",
            "ui-field-behaviour": CONNECTION_FORM,
        }],
    }
