"""Schemathesis over the OpenAPI document: every operation (the model calls included) with
generated bodies, path and query parameters and headers, in-process through ASGI with an
admin key. No answer may be a 5xx, and every answer but a 204 and the Prometheus text is
our JSON (the error shape for 4xx).

Three passes per operation: valid cases and invalid cases (Schemathesis' positive and
negative modes), then valid cases with one body field or query parameter swapped for a
hostile value (a lone surrogate, a NUL, a 20,000-character string, integers past 64 bits or
past a float, nesting 100 deep), which Hypothesis' own text and numbers never produce. Path
parameters name a real project, job, run, deployment and build, so the cases reach the
code behind the lookups instead of stopping at 404.

Schemathesis drives generation through its Hypothesis strategies (``as_strategy``) rather
than its pytest plugin, whose lazy ``from_fixture`` schemas do not run under pytest 9; the
app is built in a fixture, in a fresh home. Derandomized, so every run sees the same cases;
``ICEFLOE_FUZZ_EXAMPLES`` changes the number of cases per operation and pass.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from icefloe.api.app import create_app
from icefloe.auth import keys as api_keys
from icefloe.config import load_settings
from icefloe.store import repo
from icefloe.store.orm import Build, Deployment

# Per operation: 40 for the ~60 operations of the API keeps the whole pass near what 60
# cost for the ~40 there were before the governance routes (CI's 30 minutes).
EXAMPLES = int(os.environ.get("ICEFLOE_FUZZ_EXAMPLES", "25"))
NOT_JSON = {"/metrics"}  # Prometheus text
HTML = {"/api/v2/models/deployments/{deployment_id}/report"}  # a page when it succeeds

# Headers a caller controls beyond the schema's parameters: content types FastAPI parses or
# not, garbled lengths and encodings, and arbitrary names with latin-1 values.
_TOKEN = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                        exclude_characters=':()<>@,;\\"/[]?={}'),
                 min_size=1, max_size=20)
_LATIN1 = "".join(map(chr, (*range(33, 127), *range(161, 256))))  # visible, no controls
_VALUE = st.builds(lambda first, rest: first + rest, st.sampled_from(_LATIN1),
                   st.text(alphabet=_LATIN1 + " ", max_size=60))
EXTRA_HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "accept", "x-forwarded-for", "content-encoding",
                     "x-request-id"]) | _TOKEN.map(lambda t: "x-" + t),
    st.sampled_from(["application/json", "application/json; charset=latin-1",
                     "application/problem+json", "text/plain", "multipart/form-data",
                     "application/x-www-form-urlencoded", "gzip", ""]) | _VALUE,
    max_size=3)


def _nested(depth: int, inner: Any, as_object: bool) -> Any:
    for _ in range(depth):
        inner = {"a": inner} if as_object else [inner]
    return inner


# Values no schema-driven generator makes: what an attacker sends on purpose.
HOSTILE_ANY = [2**63, -(2**63) - 1, 2**64 + 1, 10**400, -(10**400), 2**1030, 1e308,
               -1, 0, "", "x" * 20_000, "9" * 400, "1e400", "-1", "a\x00b", "../.."]
HOSTILE_BODY = [*HOSTILE_ANY, "\ud800", "a\udfffb", {"\udc00": 1}, ["\ud83d"],
                _nested(100, 1, False), _nested(100, 1, True), [10**400] * 3,
                {"k": 2**70}, None, True, [], {}]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, dict]]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    app = create_app(load_settings(env={}, home=home), start_runner=False)
    with app.state.db.session() as s:
        _, admin = api_keys.create_api_key(s, "admin", "admin")
        project = repo.create_project(s, "fuzz", str(home / "projects" / "fuzz"))
        job = repo.create_job(s, project.id, {"name": "job", "script": "job.py"})
        run = repo.create_run(s, job, "api", "admin")
        build = Build(id=repo.new_id(), model_name="m", model_version=1,
                      status="BUILD_FAILED", reason="fuzz", created_at=repo.now())
        s.add(build)
        s.flush()
        deployment = Deployment(id=repo.new_id(), build_id=build.id, model_name="m",
                                model_version=1, access_key_hash="0" * 64,
                                status="STOPPED", created_at=repo.now(),
                                updated_at=repo.now())
        s.add(deployment)
        ids = {"project_id": project.id, "job_id": job.id, "run_id": run.id,
               "deployment_id": deployment.id, "build_id": build.id, "name": "m",
               "key_id": "nope"}
    log = app.state.runner.log_path(run)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"line one\nline two \xff\xfe\n")
    try:
        yield app, admin, ids
    finally:
        app.state.supervisor.close()
        app.state.prediction_log.close()


def _problem(response: Any, path: str) -> str | None:
    """What is wrong with an answer, or None."""
    if response.status_code >= 500:
        return f"{response.status_code} {response.content[:300]!r}"
    if response.status_code == 204 or path in NOT_JSON:
        return None
    kinds = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
    if path in HTML and response.status_code == 200:
        return None if kinds and kinds[0].startswith("text/html") else \
            f"200 answered {kinds} instead of HTML"
    if not kinds or not kinds[0].startswith("application/json"):
        return f"{response.status_code} answered {kinds} instead of JSON"
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"{response.status_code} answered malformed JSON {response.content[:200]!r}"
    if response.status_code >= 400 and not isinstance(body.get("error"), dict):
        return f"{response.status_code} without the error shape: {body!r}"[:300]
    return None


def _spoiled(operation: Any, case: Any) -> Iterator[tuple[str, Any]]:
    """New cases from a valid one, each with one body field or query parameter swapped for
    a hostile value: every field (and one the schema does not have) with every value. (Made
    afresh: Schemathesis would validate an edited case and choke on a lone surrogate.)"""

    def like(**changes: Any) -> Any:
        given = {"path_parameters": case.path_parameters, "headers": case.headers,
                 "query": case.query, "body": case.body, "media_type": case.media_type}
        return operation.Case(**{**given, **changes})

    if isinstance(case.body, dict):
        for key in [*sorted(case.body), "extra"]:
            for value in HOSTILE_BODY:
                yield f"body {key}", like(body={**case.body, key: value})
    for key in sorted(case.query or {}):
        for value in HOSTILE_ANY:
            yield f"query {key}", like(query={**case.query, key: str(value)})


def _check(operation: Any, case: Any, headers: dict[str, str], where: str,
           found: dict[tuple[str, str, str], str]) -> None:
    try:
        response = case.call(headers=headers)
    except Exception as exc:  # in-process, a server error arrives as the exception
        problem: str | None = f"500 {exc!r}"[:300]
    else:
        problem = _problem(response, operation.path)
    if problem is not None:
        found.setdefault((operation.label, problem.split(" ", 1)[0], where),
                         f"{problem}\n    {case.as_curl_command()[:600]}")


def _fuzz(operation: Any, mode: GenerationMode, hostile: bool, auth: dict[str, str],
          ids: dict[str, str], found: dict[tuple[str, str, str], str]) -> int:
    """Call one operation with generated cases (EXAMPLES of them, or for the hostile pass
    two valid ones, each spoiled every way); note each kind of problem once."""
    calls = 0
    real = {p.name: ids[p.name] for p in operation.path_parameters if p.name in ids}

    @settings(max_examples=2 if hostile else EXAMPLES, derandomize=True, deadline=None,
              database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=real or None),
           extra=EXTRA_HEADERS)
    def call(case: Any, extra: dict[str, str]) -> None:
        nonlocal calls
        cases = _spoiled(operation, case) if hostile else iter([("generated", case)])
        for where, one in cases:
            calls += 1
            _check(operation, one, {**extra, **auth}, where, found)

    try:
        call()
    except Unsatisfiable:
        # Nothing to make invalid: no parameters and no body (e.g. GET /api/v2/health).
        assert mode == GenerationMode.NEGATIVE, operation.label
    return calls


def test_every_operation_answers_without_a_server_error(
        fuzzed: tuple[Any, str, dict[str, str]]) -> None:
    app, admin, ids = fuzzed
    auth = {"Authorization": f"Bearer {admin}"}
    schema = schemathesis.openapi.from_asgi("/api/v2/openapi.json", app, headers=auth)
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda op: op.label)
    labels = {op.label for op in operations}
    assert {"POST /model", "POST /model/batch", "POST /api/v2/projects",
            "GET /api/v2/projects/{project_id}/jobs/{job_id}/runs/{run_id}/logs",
            "POST /api/v2/metrics/aggregate", "POST /api/v2/keys"} <= labels
    assert len(operations) >= 25

    found: dict[tuple[str, str, str], str] = {}  # (operation, problem, where) -> a case
    calls = 0
    started = time.monotonic()
    for operation in operations:
        for mode, hostile in ((GenerationMode.POSITIVE, False),
                              (GenerationMode.NEGATIVE, False),
                              (GenerationMode.POSITIVE, True)):
            calls += _fuzz(operation, mode, hostile, auth, ids, found)
    elapsed = time.monotonic() - started
    print(f"fuzz: {calls} calls over {len(operations)} operations in {elapsed:.0f} s")
    assert not found, "\n".join(f"{op} ({where}): {case}"
                                 for (op, _, where), case in sorted(found.items()))
