"""Under Lambda's own runtime client at log level DEBUG, no key value reaches the logs.

``python -m awslambdaric scavenger.handler.handler``, started here by hand (not through
``SubprocessInvoker``), runs the runtime's source directory against the local Runtime API
(``local/runtime_api.py``), which hands out one invocation and records the answer. The
runtime client sets the root logger to ``AWS_LAMBDA_LOG_LEVEL``; at DEBUG botocore would
log each request's body, keys included, unless the scavenger keeps it quiet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_scavenger.local.runtime_api import RuntimeApi
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from testkit.events import event, record
from testkit.tables import put_items, scan_keys

pytestmark = pytest.mark.ddb

ASSET_DIR = Path(__file__).resolve().parents[1] / "src" / "stream_scavenger" / "runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:scavenger"


@pytest.fixture
def run_under_runtime_client(ddb_local: Any, tmp_path: Path) -> Iterator[Any]:
    """run(config, payload) -> (answers, output of the process)."""
    started: list[tuple[subprocess.Popen[bytes], RuntimeApi]] = []

    def run(config: ScavengerConfig, payload: bytes) -> tuple[list[tuple[str, Any]], str]:
        api = RuntimeApi(FUNCTION_ARN)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ASSET_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_FUNCTION_NAME": "scavenger",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL_DYNAMODB": ddb_local.endpoint_url,
            **config.to_env(),
        }
        output = tmp_path / f"output-{len(started)}.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", "scavenger.handler.handler"],
                cwd=ASSET_DIR,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        started.append((process, api))
        api.invoke(payload, timeout_s=60)
        try:
            answer = api.answer(timeout_s=60)
            if answer is None:
                raise AssertionError("no answer posted: " + output.read_text(errors="replace"))
        finally:
            process.kill()
            process.wait(10)
        return [(answer.kind, answer.payload())], output.read_text(errors="replace")

    yield run
    for process, api in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        api.close()


@pytest.mark.parametrize("log_items", [False, True], ids=["default", "log-items"])
def test_no_key_value_is_logged_at_debug_unless_asked(
    ddb: Any, make_table: Any, run_under_runtime_client: Any, log_items: bool
) -> None:
    table = make_table({"pk": "S"})
    secrets = [f"customer-4711-secret-{i}" for i in range(3)]
    put_items(ddb, table, [{"pk": s} for s in secrets] + [{"pk": "keep"}])
    config = ScavengerConfig.single(
        target_table=table, key_mapping={"pk": "pk"}, log_items=log_items
    )
    payload = json.dumps(event(*(record("INSERT", {"pk": s}) for s in secrets))).encode()

    answers, output = run_under_runtime_client(config, payload)

    assert answers == [("response", {"batchItemFailures": []})]
    assert scan_keys(ddb, table, ["pk"]) == {("keep",)}
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line.get("message") == "scavenged" for line in lines), "the logs were captured"
    sdk_debug = [
        line
        for line in lines
        if line.get("level") == "DEBUG" and str(line.get("logger")).startswith("botocore")
    ]
    leaked = [s for s in secrets if s in output]
    if log_items:
        # The root logger really is at DEBUG, and then the SDK logs request bodies.
        assert sdk_debug, "botocore logs at DEBUG when item values may be logged"
        assert leaked == secrets, "with log_items the values are logged (the check can see them)"
    else:
        assert sdk_debug == []
        assert leaked == [], "a key value reached the logs at DEBUG"
