"""Secrets through the real CLI against a real control plane: keys never need a flag `ps`
shows, secret job variables come from the caller's environment and never come back."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ICEFLOE
from tests.integration.test_control_plane import ControlPlane, running

SECRET = "s3cret"
SECRET_SCRIPT = (
    "import os\n"
    "value = os.environ.get('TOKEN')\n"
    "print('[/x] [bold red] TOKEN set:', value is not None, 'length:', len(value or ''))\n"
)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One control plane for the module (each test uses projects of its own)."""
    yield from running(tmp_path_factory.mktemp("secrets") / "home")


def icefloe(cp: ControlPlane, *args: str, stdin: str = "",
            **env: str) -> subprocess.CompletedProcess[str]:
    """The real command against ``cp`` with no key in its environment unless given."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("ICEFLOE_API_KEY", "ICEFLOE_ACCESS_KEY", "TOKEN")}
    full_env.update(ICEFLOE_HOME=str(cp.home), COLUMNS="200",
                    ICEFLOE_URL=cp.url.removesuffix("/api/v2"), **env)
    return subprocess.run([*ICEFLOE, *args], input=stdin, capture_output=True, text=True,
                          env=full_env, timeout=300, check=False)


def key_file(tmp_path: Path, text: str, name: str = "key") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_api_key_from_environment_file_and_stdin_without_warning(
        cp: ControlPlane, tmp_path: Path) -> None:
    cp.project("keys-ok")
    path = key_file(tmp_path, f"  {cp.key}\n\n")
    for args, stdin, env in (
        (["--api-key-file", str(path)], "", {}),
        (["--api-key", "-"], f"{cp.key}\n", {}),
        ([], "", {"ICEFLOE_API_KEY": cp.key}),
    ):
        proc = icefloe(cp, "project", "list", "--json", *args, stdin=stdin, **env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "keys-ok" in [p["name"] for p in json.loads(proc.stdout)]
        assert "warning" not in proc.stderr and cp.key not in proc.stderr


def test_a_literal_api_key_works_with_a_warning(cp: ControlPlane) -> None:
    proc = icefloe(cp, "project", "list", "--json", "--api-key", cp.key)
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)
    warning = proc.stderr
    assert warning.startswith("warning: --api-key VALUE shows the API key to every user")
    for hint in ("ps", "$ICEFLOE_API_KEY", "--api-key-file PATH", "--api-key - (read from stdin)"):
        assert hint in warning
    assert cp.key not in warning


def test_key_sources_that_cannot_be_used(cp: ControlPlane, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such-key"
    empty = key_file(tmp_path, " \n", "empty")
    wrong = key_file(tmp_path, "ifk_000000000000_nope\n", "wrong")
    for args, stdin, code, fragment in (
        (["--api-key-file", str(missing)], "", 2, f"--api-key-file: {missing} does not exist"),
        (["--api-key-file", str(tmp_path)], "", 2, f"cannot read {tmp_path}"),
        (["--api-key-file", str(empty)], "", 2, f"{empty} holds no API key"),
        (["--api-key", "-"], "", 2, "--api-key -: no API key on stdin"),
        (["--api-key", "-", "--api-key-file", str(wrong)], "", 2,
         "give --api-key or --api-key-file, not both"),
        (["--api-key-file", str(wrong)], "", 9, "invalid API key"),
        ([], "", 9, "API key"),  # none at all: the server refuses, as before
    ):
        proc = icefloe(cp, "project", "list", *args, stdin=stdin)
        assert proc.returncode == code, (args, proc.stderr)
        assert fragment in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_secret_env_reaches_the_run_and_is_never_shown(cp: ControlPlane, tmp_path: Path) -> None:
    pid = cp.project("vault")
    folder = Path(cp.client.get(f"/projects/{pid}").json()["path"])
    (folder / "secret.py").write_text(SECRET_SCRIPT)
    keyed = {"ICEFLOE_API_KEY": cp.key}

    unset = icefloe(cp, "job", "create", "-p", "vault", "--name", "nope", "--script",
                    "secret.py", "--secret-env", "TOKEN", **keyed)
    assert unset.returncode == 2
    assert "--secret-env TOKEN: the variable TOKEN is not set" in unset.stderr
    loader = icefloe(cp, "job", "create", "-p", "vault", "--name", "nope", "--script",
                     "secret.py", "--secret-env", "LD_PRELOAD", LD_PRELOAD="", **keyed)
    assert loader.returncode == 2 and "LD_PRELOAD" in loader.stderr

    created = icefloe(cp, "job", "create", "-p", "vault", "--name", "uses-token", "--script",
                      "secret.py", "--secret-env", "TOKEN", "--json", TOKEN=SECRET, **keyed)
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    assert job["secret_environment"] == {"TOKEN": "***"} and job["environment"] == {}
    assert SECRET not in created.stdout + created.stderr

    ran = icefloe(cp, "job", "run", "uses-token", "-p", "vault", "--wait", "--json", **keyed)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = json.loads(ran.stdout)["id"]
    logs = icefloe(cp, "job", "logs", "uses-token", "-p", "vault", "--run", run_id, **keyed)
    assert logs.returncode == 0, logs.stderr
    assert "[/x] [bold red] TOKEN set: True length: 6" in logs.stdout  # a log line as text
    assert SECRET not in logs.stdout

    listed = icefloe(cp, "job", "list", "-p", "vault", "--json", **keyed)
    assert [j["secret_environment"] for j in json.loads(listed.stdout)] == [{"TOKEN": "***"}]
    table = icefloe(cp, "job", "list", "-p", "vault", **keyed)
    assert table.returncode == 0 and "uses-token" in table.stdout
    for shown in (listed.stdout, table.stdout,
                  cp.client.get(f"/projects/{pid}/jobs/{job['id']}").text,
                  cp.client.get(f"/projects/{pid}/jobs").text,
                  cp.client.get("/audit").text):
        assert SECRET not in shown


def test_project_delete_keeps_the_folder(cp: ControlPlane) -> None:
    keyed = {"ICEFLOE_API_KEY": cp.key}
    made = icefloe(cp, "project", "create", "doomed", "--json", **keyed)
    assert made.returncode == 0, made.stderr
    project = json.loads(made.stdout)
    folder = Path(project["path"])
    (folder / "keep.py").write_text("print('still here')\n")
    icefloe(cp, "job", "create", "-p", "doomed", "--name", "j", "--script", "keep.py", **keyed)

    gone = icefloe(cp, "project", "delete", "doomed", "--json", **keyed)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout) == {"id": project["id"], "name": "doomed",
                                       "path": project["path"], "deleted": True,
                                       "folder_kept": True}
    assert (folder / "keep.py").read_text() == "print('still here')\n"
    names = [p["name"] for p in json.loads(
        icefloe(cp, "project", "list", "--json", **keyed).stdout)]
    assert "doomed" not in names
    assert cp.client.get(f"/projects/{project['id']}").status_code == 404

    again = json.loads(icefloe(cp, "project", "create", "doomed-too", "--json", **keyed).stdout)
    by_id = icefloe(cp, "project", "delete", again["id"], **keyed)
    assert by_id.returncode == 0, by_id.stderr
    assert f"deleted project doomed-too ({again['id']})" in by_id.stderr
    assert f"its folder {again['path']} is kept on disk" in by_id.stderr
    missing = icefloe(cp, "project", "delete", "doomed", **keyed)
    assert missing.returncode == 3 and "does not exist" in missing.stderr


def test_access_key_sources_without_a_deployment(cp: ControlPlane, tmp_path: Path) -> None:
    """Every way reaches the gateway (an unknown key is refused there, exit 9); the checks
    before it name what is wrong (exit 2)."""
    keyed = {"ICEFLOE_API_KEY": cp.key}
    path = key_file(tmp_path, "m-unknown\n", "access")
    data = ["--data", "{}"]
    for args, stdin, env in ((["--access-key-file", str(path)], "", {}),
                             (["--access-key", "-"], "m-unknown\n", {}),
                             ([], "", {"ICEFLOE_ACCESS_KEY": "m-unknown"})):
        proc = icefloe(cp, "predict", *args, *data, stdin=stdin, **keyed, **env)
        assert proc.returncode == 9, (args, proc.stderr)
        assert "warning" not in proc.stderr
    literal = icefloe(cp, "predict", "--access-key", "m-unknown", *data, **keyed)
    assert literal.returncode == 9
    assert literal.stderr.startswith("warning: --access-key VALUE shows the model access key")
    assert "$ICEFLOE_ACCESS_KEY" in literal.stderr and "--access-key-file" in literal.stderr
    for args, fragment in (
        ([], "no model access key: set $ICEFLOE_ACCESS_KEY, --access-key-file PATH"),
        (["--access-key-file", str(tmp_path / "nope")], f"{tmp_path / 'nope'} does not exist"),
        (["--access-key", "-", "--api-key", "-"], "only one key can be read from stdin"),
    ):
        proc = icefloe(cp, "predict", *args, *data, **keyed)
        assert proc.returncode == 2 and fragment in proc.stderr, (args, proc.stderr)


@pytest.mark.spark
def test_predict_with_the_access_key_from_a_file_stdin_or_environment(
        cp: ControlPlane, spark, tmp_path: Path) -> None:
    from icefloe.config import load_settings
    from icefloe.demo.loans import NUMERIC_FEATURES, generate_loans
    from icefloe.lakehouse import Lakehouse
    from icefloe.ml.spec import LabelSpec, TrainSpec
    from icefloe.ml.train import train

    settings = load_settings(env={}, home=cp.home)
    Lakehouse(settings).write("lending.loans", generate_loans(1200, 8), "create")
    train(TrainSpec(table="lending.loans", label=LabelSpec(
        "loan_status", ("Charged Off", "Default")), model_name="loan-default"), settings,
        spark=spark)
    api_file = key_file(tmp_path, cp.key + "\n", "api")
    dep = icefloe(cp, "model", "deploy", "loan-default/1", "--json",
                  "--api-key-file", str(api_file))
    assert dep.returncode == 0 and "warning" not in dep.stderr, dep.stderr
    access = json.loads(dep.stdout)["access_key"]
    record = json.dumps({name: 1.0 for name in NUMERIC_FEATURES})
    access_file = key_file(tmp_path, f"{access}\n", "access")
    probabilities = set()
    for args, stdin, env in ((["--access-key-file", str(access_file)], "", {}),
                             (["--access-key", "-"], access, {}),
                             ([], "", {"ICEFLOE_ACCESS_KEY": access})):
        proc = icefloe(cp, "predict", *args, "--data", record, "--api-key-file",
                       str(api_file), stdin=stdin, **env)
        assert proc.returncode == 0 and "warning" not in proc.stderr, (args, proc.stderr)
        probabilities.add(json.loads(proc.stdout)["response"]["probability"])
    assert len(probabilities) == 1
