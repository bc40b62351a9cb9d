"""The spark-submit job kind's settings and command line (pure)."""

import pytest

from icefloe.errors import InvalidInputError
from icefloe.jobs.submit import check_spark, from_cde, merged, submit_command


def test_settings_are_checked_and_named() -> None:
    assert check_spark({"driver_memory": "1G", "executor_cores": 2,
                        "conf": {"spark.sql.shuffle.partitions": 8}}) == {
        "driver_memory": "1g", "executor_cores": 2,
        "conf": {"spark.sql.shuffle.partitions": "8"}}
    assert check_spark(None) == {} and check_spark({"conf": {}}) == {}
    for bad, named in [({"jars": "x"}, "jars"), ({"driver_memory": "lots"}, "driver_memory"),
                       ({"executor_cores": 0}, "executor_cores"),
                       ({"num_executors": True}, "num_executors"),
                       ({"conf": {"hadoop.x": "1"}}, "hadoop.x"),
                       ({"conf": {"spark.master": "local"}}, "spark.master"),
                       ({"conf": {"spark.x": "a\nb"}}, "spark.x"),
                       ("2g", "object")]:
        with pytest.raises(InvalidInputError, match=named):
            check_spark(bad)


def test_cde_overrides_map_onto_the_same_settings() -> None:
    assert from_cde({"driverMemory": "2g", "numExecutors": 3, "executorCores": None}) == {
        "driver_memory": "2g", "num_executors": 3}
    with pytest.raises(InvalidInputError, match="overrides.spark"):
        from_cde({"conf": {"nope": "1"}})


def test_a_run_sets_its_own_over_the_job() -> None:
    job = {"executor_memory": "1g", "conf": {"spark.a": "1", "spark.b": "2"}}
    assert merged(job, {"executor_memory": "2g", "conf": {"spark.b": "3"}}) == {
        "executor_memory": "2g", "conf": {"spark.a": "1", "spark.b": "3"}}
    assert merged(job, None) == job and merged(None, None) == {}


def test_the_command_is_an_argument_list_in_client_mode() -> None:
    command = submit_command("/venv/spark-submit", master="spark://h:7077", name="icefloe-j-r",
                             spark={"driver_memory": "1g", "executor_cores": 2,
                                    "num_executors": 3, "conf": {"spark.x": "a b; rm -rf /"}},
                             script="/p/app.py", arguments=["--day", "2026-11-28"])
    assert command[:8] == ["/venv/spark-submit", "--master", "spark://h:7077",
                           "--deploy-mode", "client", "--name", "icefloe-j-r",
                           "--driver-memory"]
    assert "spark.cores.max=6" in command and "spark.executor.instances=3" in command
    assert "spark.x=a b; rm -rf /" in command  # one argument, never a shell's
    assert command[-3:] == ["/p/app.py", "--day", "2026-11-28"]
