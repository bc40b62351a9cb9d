"""The README's jobs block through the real CLI against a real control plane: steps shown
on stderr as they happen, stdout only the result, one timestamp format in every answer."""

import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ICEFLOE
from tests.integration.test_control_plane import ControlPlane, running

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
TRAIN = (  # waits for the test to say go: the test sees the run RUNNING before it ends
    "import pathlib, sys, time\n"
    "print('training', flush=True)\n"
    "deadline = time.monotonic() + 120\n"
    "while not pathlib.Path('go').exists():\n"
    "    if time.monotonic() > deadline:\n"
    "        sys.exit('nobody said go')\n"
    "    time.sleep(0.05)\n"
    "print('trained')\n"
)
SCRIPTS = {"train.py": TRAIN, "push.py": "print('pushed')\n",
           "fetch.py": "import os\nprint('token set:', bool(os.environ.get('S3_TOKEN')))\n"}


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    yield from running(tmp_path_factory.mktemp("cli-cp") / "home")


def _env(cp: ControlPlane, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ICEFLOE_API_KEY", "S3_TOKEN")}
    return {**env, "ICEFLOE_HOME": str(cp.home), "COLUMNS": "200",
            "ICEFLOE_URL": cp.url.removesuffix("/api/v2"), "ICEFLOE_API_KEY": cp.key, **extra}


def cli(cp: ControlPlane, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The real command against ``cp`` with its admin key in the environment."""
    return subprocess.run([*ICEFLOE, *args], capture_output=True, text=True,
                          env=_env(cp, **extra), timeout=300, check=False)


def _lines(stream) -> "queue.Queue[str | None]":
    """The lines of a stream as they come (None at its end), read by a thread."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_the_readme_jobs_block_shows_its_steps_as_they_happen(cp: ControlPlane) -> None:
    made = cli(cp, "project", "create", "demo", "--json")
    assert made.returncode == 0, made.stderr
    project = json.loads(made.stdout)
    assert TIME.match(project["created_at"]), project
    folder = Path(project["path"])
    for name, text in SCRIPTS.items():
        (folder / name).write_text(text)
    for args, extra in (
        (["job", "create", "-p", "demo", "--name", "TrainModel", "--script", "train.py",
          "--timeout", "900"], {}),
        (["job", "create", "-p", "demo", "--name", "PushModel", "--script", "push.py",
          "--parent", "TrainModel"], {}),
        (["job", "create", "-p", "demo", "--name", "Fetch", "--script", "fetch.py",
          "--secret-env", "S3_TOKEN"], {"S3_TOKEN": "t0ken"}),
    ):
        proc = cli(cp, *args, **extra)
        assert proc.returncode == 0 and "created job" in proc.stderr, (args, proc.stderr)
    jobs = {j["name"]: j for j in json.loads(cli(cp, "job", "list", "-p", "demo",
                                                  "--json").stdout)}
    assert jobs["TrainModel"]["timeout"] == 900
    assert jobs["PushModel"]["parent_id"] == jobs["TrainModel"]["id"]
    assert jobs["Fetch"]["secret_environment"] == {"S3_TOKEN": "***"}

    waiting = subprocess.Popen([*ICEFLOE, "job", "run", "TrainModel", "-p", "demo", "--wait"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(cp))
    lines = _lines(waiting.stderr)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while not any("of TrainModel: ENGINE_RUNNING" in line for line in seen):
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "".join(seen)
        seen.append(line)
    assert waiting.poll() is None  # shown while the run still runs: it waits for go
    (folder / "go").write_text("")
    while (line := lines.get(timeout=120)) is not None:  # stderr ends when it exits
        seen.append(line)
    assert waiting.wait(timeout=30) == 0, "".join(seen)
    assert waiting.stdout is not None
    assert waiting.stdout.read() == ""  # a human run's result is its lines on stderr

    def at(fragment: str) -> int:
        return next(i for i, line in enumerate(seen) if fragment in line)

    assert at("job run: started run") < at("of TrainModel: ENGINE_RUNNING") \
        < at("of TrainModel: ENGINE_SUCCEEDED") < at("of PushModel: ENGINE_SUCCEEDED")

    again = cli(cp, "--json", "job", "run", "TrainModel", "-p", "demo", "--wait")
    assert again.returncode == 0, again.stderr
    chain = json.loads(again.stdout)  # nothing but the JSON document on stdout
    assert [r["status"] for r in chain["chain"]] == ["ENGINE_SUCCEEDED"] * 2
    assert chain["failed"] == [] and "job run: started run" in again.stderr
    assert all(TIME.match(r[k]) for r in chain["chain"]
               for k in ("created_at", "running_at", "finished_at"))

    runs = json.loads(cli(cp, "job", "runs", "TrainModel", "-p", "demo", "--json").stdout)
    assert len(runs) == 2 and chain["run"]["id"] == runs[0]["id"]
    logs = cli(cp, "job", "logs", "TrainModel", "-p", "demo", "--run", runs[1]["id"],
               "--follow")
    assert logs.returncode == 0 and logs.stdout == "training\ntrained\n", logs.stdout
    gone = cli(cp, "project", "delete", "demo")
    assert gone.returncode == 0 and f"its folder {folder} is kept on disk" in gone.stderr


def test_every_timestamp_has_one_format(cp: ControlPlane) -> None:
    p = cp.project("stamps")
    j = cp.job(p, "hello", "ok.py")
    ended = cp.wait(p, j, cp.run(p, j))
    assert ended["status"] == "ENGINE_SUCCEEDED"
    answers = [cp.client.get(f"/projects/{p}").json(), cp.client.get(f"/projects/{p}/jobs").json(),
               ended, cp.client.get("/keys").json(), cp.client.get("/audit").json()]
    stamps = [(key, value) for answer in answers for key, value in _walk(answer)
              if key.endswith("_at") or key == "at"]
    assert {k for k, _ in stamps} >= {"created_at", "updated_at", "finished_at", "at"}
    bad = [(k, v) for k, v in stamps if v is not None and not TIME.match(v)]
    assert not bad, bad
    assert cp.client.get("/models/deployments").json() == {"deployments": []}
    assert cp.client.get("/openapi.json").json()["info"]["title"] == "icefloe"
    listed = json.loads(cli(cp, "job", "list", "-p", "stamps", "--json").stdout)
    assert TIME.match(listed[0]["created_at"])
    assert cp.client.delete(f"/projects/{p}/jobs/{j}").status_code == 204
    assert cp.client.get(f"/projects/{p}/jobs/{j}").status_code == 404


def _walk(value: object) -> Iterator[tuple[str, object]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key, inner
            yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def test_global_options_of_remote_commands(cp: ControlPlane, tmp_path: Path) -> None:
    early = cli(cp, "--json", "project", "list")
    assert early.returncode == 0 and isinstance(json.loads(early.stdout), list)
    late = cli(cp, "project", "list", "--home", str(tmp_path / "none"), "--debug", "--json")
    assert late.returncode == 0 and json.loads(late.stdout) == json.loads(early.stdout)
    assert not (tmp_path / "none").exists()  # a remote command needs no home
