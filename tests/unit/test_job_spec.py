"""The job rules and page tokens are pure: checked here without a database."""

import pytest

from icefloe.errors import InvalidInputError
from icefloe.jobs.spec import check_job_fields
from icefloe.paging import check_page_size, offset_of, token_for


def test_job_fields_are_checked_and_normalised() -> None:
    out = check_job_fields({"name": "Train", "script": "jobs/train.py", "schedule": None,
                            "parent_job_id": "", "paused": 1, "timeout": 60}, creating=True)
    assert out == {"name": "Train", "script": "jobs/train.py", "schedule": "",
                   "parent_job_id": None, "paused": True, "timeout": 60}
    assert check_job_fields({"retries": 2}, creating=False) == {"retries": 2}
    for fields, fragment in [
        ({"script": "a.py"}, "'name' is required"),
        ({"name": "x", "script": "a.py", "kernel": "r"}, "kernel"),
        ({"name": "x", "script": "../a.py"}, "relative path"),
        ({"name": "x", "script": "a.py", "timeout": True}, "'timeout'"),
        ({"name": "x", "script": "a.py", "cpu": 2**31}, "'cpu'"),
        ({"name": "x", "script": "a.py", "schedule": "daily"}, "cron"),
        ({"name": "x", "script": "a.py", "environment": {"LD_PRELOAD": "x"}}, "LD_PRELOAD"),
        ({"name": "x/y", "script": "a.py"}, "invalid job name"),
        ({"name": "x", "script": "a.py", "colour": "red"}, "colour"),
    ]:
        with pytest.raises(InvalidInputError, match=fragment):
            check_job_fields(fields, creating=True)


def test_page_tokens_round_trip_and_refuse_what_they_did_not_make() -> None:
    assert offset_of(None) == 0 and offset_of(token_for(300)) == 300
    for bad in ("!!", token_for(-5), token_for(2**40), "x" * 50):
        with pytest.raises(InvalidInputError, match="page_token"):
            offset_of(bad)
    assert check_page_size(1000) == 1000
    with pytest.raises(InvalidInputError, match="page_size"):
        check_page_size(0)
