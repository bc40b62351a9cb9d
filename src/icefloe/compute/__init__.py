"""Compute: Java discovery, the Spark session factory and the Spark <-> Iceberg bridge."""

from icefloe.compute.bridge import read_table, write_table
from icefloe.compute.java import JavaInfo, find_java
from icefloe.compute.spark import spark_session

__all__ = ["JavaInfo", "find_java", "read_table", "spark_session", "write_table"]
