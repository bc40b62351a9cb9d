"""The Airflow names this provider uses, from Airflow 3's task SDK or Airflow 2's modules."""

from __future__ import annotations

try:  # Airflow 3
    from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink
    from airflow.sdk.execution_time.xcom import XCom
except ImportError:  # Airflow 2.10
    from airflow.hooks.base import BaseHook
    from airflow.models import BaseOperator, XCom
    from airflow.models.baseoperatorlink import BaseOperatorLink

from airflow.exceptions import AirflowException

__all__ = ["AirflowException", "BaseHook", "BaseOperator", "BaseOperatorLink", "XCom"]
