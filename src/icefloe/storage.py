"""Where table files and model artifacts live: folders, or an S3-compatible object store.

A warehouse or artifact location ``s3://bucket/prefix`` puts them in the object store named
by the ``s3_*`` settings, reached the same way by every reader and writer of the files:
PyIceberg's FileIO, Spark (Hadoop's S3A filesystem, for Iceberg's Spark runtime and the
bridge alike) and MLflow's artifact store (boto3). The credentials go to each of them from
the settings, never into a log or a printed setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from icefloe.config import Settings

S3_SCHEMES = ("s3://", "s3a://")


def is_s3(location: str) -> bool:
    """Whether a location is in an S3-compatible object store."""
    return location.startswith(S3_SCHEMES)


def uses_s3(settings: Settings) -> bool:
    """Whether the warehouse or the model artifacts are in the object store."""
    return is_s3(settings.warehouse_path) or is_s3(settings.mlflow_artifacts_uri)


def pyiceberg_properties(settings: Settings) -> dict[str, str]:
    """The FileIO properties of PyIceberg's catalog (empty without ``s3_*`` settings)."""
    props: dict[str, str] = {}
    if settings.s3_endpoint:
        props["s3.endpoint"] = settings.s3_endpoint
    if settings.s3_access_key_id:
        props["s3.access-key-id"] = settings.s3_access_key_id
    if settings.s3_secret_access_key:
        props["s3.secret-access-key"] = settings.s3_secret_access_key
    if settings.s3_region:
        props["s3.region"] = settings.s3_region
    return props


def spark_conf(settings: Settings, jar_paths: list[Path]) -> dict[str, str]:
    """Spark configuration that reads and writes ``s3://`` files through Hadoop's S3A.

    Iceberg's Spark runtime reaches table files through Hadoop's filesystems too, so one
    configuration serves the native catalog and the bridge. Spark redacts the secret in its
    UI and logs (its redaction pattern matches ``secret``).
    """
    conf = {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region or "us-east-1",
            "spark.jars": ",".join(str(p) for p in jar_paths)}
    if settings.s3_endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3_endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            urlsplit(settings.s3_endpoint).scheme == "https").lower()
    if settings.s3_access_key_id:
        conf["spark.hadoop.fs.s3a.access.key"] = settings.s3_access_key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = settings.s3_secret_access_key
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = \
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
    return conf


def client_environment(settings: Settings) -> dict[str, str]:
    """The variables boto3 (MLflow's artifact store) reads for the object store."""
    env: dict[str, str] = {}
    if settings.s3_endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint
    if settings.s3_access_key_id:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key
    if settings.s3_region:
        env["AWS_DEFAULT_REGION"] = settings.s3_region
    return env


def use_for_artifacts(settings: Settings) -> None:
    """Point this process's MLflow artifact store at the object store of the settings.

    MLflow's S3 artifact repository reads only the environment, so the settings are put
    there (a value already set by the user is kept).
    """
    if not is_s3(settings.mlflow_artifacts_uri) and not settings.s3_endpoint:
        return
    for name, value in client_environment(settings).items():
        os.environ.setdefault(name, value)
