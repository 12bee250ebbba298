"""Local invocations go through Lambda's own runtime client (``awslambdaric``).

``SubprocessInvoker`` runs ``python -m awslambdaric <handler>`` from the function's asset
against the loopback Runtime API of ``local/runtime_api.py``. The DynamoDB Local tests use
a synthesized app (its template's environment and ``LoggingConfig``); the others use a tiny
handler written into ``tmp_path`` and need no Java.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb

from stream_scavenger import StreamScavenger
from stream_scavenger.local.assembly import FunctionDef, TableDef, load_assembly
from stream_scavenger.local.event_source_mapping import create_table
from stream_scavenger.local.invoker import FunctionError, SubprocessInvoker
from stream_scavenger.local.runtime_api import PREFIX, RuntimeApi
from testkit.events import event, record
from testkit.tables import put_items, scan_keys

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
CLOSED_PORT_PROXY = "http://127.0.0.1:9"
SCAVENGERS = ("Plain", "Quiet", "Loud")
_tables = itertools.count()


# --- the synthesized app, against DynamoDB Local ---------------------------------------------


class LoggingStack(cdk.Stack):
    """One source; scavengers at the default level, at DEBUG, and at DEBUG with item keys."""

    def __init__(self, scope: cdk.App) -> None:
        super().__init__(scope, "RuntimeClient")
        key = {
            "partition_key": dynamodb.Attribute(
                name="messageId", type=dynamodb.AttributeType.STRING
            ),
            "sort_key": dynamodb.Attribute(name="createdAt", type=dynamodb.AttributeType.NUMBER),
        }
        source = dynamodb.Table(self, "Messages", **key)
        options: dict[str, dict[str, Any]] = {
            "Plain": {},
            "Quiet": {"log_level": "DEBUG"},
            "Loud": {"log_level": "DEBUG", "log_item_keys": True},
        }
        for name in SCAVENGERS:
            target = dynamodb.Table(self, f"{name}Staging", **key)
            StreamScavenger(self, name, source_table=source, target_table=target, **options[name])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[FunctionDef, str, TableDef]]:
    """The synthesized app: scavenger name -> its function, its target's logical ID and table."""
    out = tmp_path_factory.mktemp("runtime-client") / "cdk.out"
    cdk_app = cdk.App(outdir=str(out))
    LoggingStack(cdk_app)
    cdk_app.synth()
    (stack,) = load_assembly(out)
    found = {}
    for name in SCAVENGERS:
        (function,) = [f for f in stack.functions if f.logical_id.startswith(name)]
        (target,) = [t for t in stack.tables if t.startswith(f"{name}Staging")]
        found[name] = (function, target, stack.tables[target])
    return found


def new_target(ddb: Any, table: TableDef) -> str:
    """A fresh table shaped like ``table``; its name."""
    name = f"rc{os.getpid()}-{next(_tables)}"
    create_table(ddb, name, table)
    return name


@pytest.fixture
def scavenger(app: Any, ddb: Any, ddb_local: Any, tmp_path: Path) -> Iterator[Any]:
    """scavenger(name) -> (invoker, its fresh target table, the file its log stream goes to)."""
    started: list[tuple[SubprocessInvoker, Any]] = []

    def start(name: str) -> tuple[SubprocessInvoker, str, Path]:
        function, target_id, target = app[name]
        table = new_target(ddb, target)
        log = tmp_path / f"{table}.log"
        sink = log.open("wb")  # this process writes the forwarded lines: open while it runs
        invoker = SubprocessInvoker.for_function(
            function, {target_id: table}, ddb_local.endpoint_url, stderr=sink
        )
        started.append((invoker, sink))
        return invoker, table, log

    yield start
    for invoker, sink in started:
        invoker.close()
        sink.close()


def messages(tag: str, count: int) -> list[dict[str, Any]]:
    """Distinctive keys, so that a leak into the logs shows in a plain search."""
    return [{"messageId": f"{tag}-secret-{i}", "createdAt": 987_650_000 + i} for i in range(count)]


def inserts(items: list[dict[str, Any]]) -> dict[str, Any]:
    return event(*(record("INSERT", item, view_type="KEYS_ONLY") for item in items))


def log_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the log stream as JSON (fails on a line that is not)."""
    text = log.read_text()
    assert text.endswith("\n"), "every line is complete"
    return [json.loads(line) for line in text.splitlines()]


def test_a_batch_deletes_its_keys_and_answers_through_the_runtime_client(
    scavenger: Any, ddb: Any
) -> None:
    invoker, table, log = scavenger("Plain")
    items = messages("batch", 30)
    put_items(ddb, table, [*items, {"messageId": "unrelated", "createdAt": 1}])
    bad = record("INSERT", {"messageId": "", "createdAt": 2}, view_type="KEYS_ONLY")  # unmappable

    answer = invoker.invoke({"Records": [*inserts(items)["Records"], bad]})

    assert answer == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["messageId"]) == {("unrelated",)}
    assert invoker.metrics["KeysDeleted"] == 30 and invoker.metrics["UnmappableRecords"] == 1
    lines = log_lines(log)
    (summary,) = [line for line in lines if line.get("message") == "scavenged"]
    # The runtime client wrote it (the template's LoggingConfig: JSON), for this request.
    assert summary["level"] == "INFO" and summary["logger"] == "stream_scavenger"
    assert summary["requestId"] and summary["summary"]["deleted"] == 30


def test_a_failed_delete_comes_back_as_a_partial_batch_response(scavenger: Any, ddb: Any) -> None:
    invoker, table, _ = scavenger("Plain")
    ddb.delete_table(TableName=table)  # every request now fails: ResourceNotFoundException
    ddb.get_waiter("table_not_exists").wait(TableName=table)
    records = inserts(messages("gone", 3))["Records"]

    answer = invoker.invoke({"Records": records})

    reported = [r["dynamodb"]["SequenceNumber"] for r in records]
    assert answer == {"batchItemFailures": [{"itemIdentifier": s} for s in reported]}
    assert invoker.metrics["RecordsReported"] == 3


def test_metrics_are_counted_for_the_invocation_that_emitted_them(scavenger: Any, ddb: Any) -> None:
    invoker, table, log = scavenger("Plain")
    sizes = [1, 30, 7, 0, 51, 2]
    before = dict(invoker.metrics)
    for n, size in enumerate(sizes):
        items = messages(f"m{n}", size)
        put_items(ddb, table, items)
        invoker.invoke(inserts(items))
        delta = {k: v - before.get(k, 0) for k, v in invoker.metrics.items()}
        assert delta["RecordsReceived"] == size, f"invocation {n}"
        assert delta["KeysDeleted"] == size, f"invocation {n}"
        assert delta["BatchWriteRequests"] == math.ceil(size / 25), f"invocation {n}"
        before = dict(invoker.metrics)
    assert scan_keys(ddb, table, ["messageId"]) == set()
    emf = [line for line in log_lines(log) if "_aws" in line]
    assert [d["RecordsReceived"] for d in emf] == sizes  # each document intact, once, in order
    assert invoker.metrics["RecordsReceived"] == sum(sizes)


@pytest.mark.parametrize("name", ["Quiet", "Loud"])
def test_no_key_value_reaches_the_log_stream_at_debug_unless_asked(
    app: Any, scavenger: Any, ddb: Any, name: str
) -> None:
    invoker, table, log = scavenger(name)
    items = messages(f"debug{name}", 3)
    put_items(ddb, table, items)

    assert invoker.invoke(inserts(items)) == {"batchItemFailures": []}

    assert scan_keys(ddb, table, ["messageId"]) == set()
    invoker.close()  # everything forwarded
    lines = log_lines(log)
    runtime_lines = [line for line in lines if "_aws" not in line]
    for line in runtime_lines:  # the runtime client's JSON format
        assert {"timestamp", "level", "message", "logger", "requestId"} <= set(line), line
    emf = [line for line in lines if "_aws" in line]
    assert [(d["RecordsReceived"], d["KeysDeleted"]) for d in emf] == [(3, 3)]
    # The template's ApplicationLogLevel reaches the runtime client (which sets the root
    # logger to it); the Loud run below shows that DEBUG lines do get through then.
    assert app[name][0].runtime_environment()["AWS_LAMBDA_LOG_LEVEL"] == "DEBUG"
    text = log.read_text()
    leaked = [item["messageId"] for item in items if item["messageId"] in text]
    leaked += [str(item["createdAt"]) for item in items if str(item["createdAt"]) in text]
    sdk_debug = [
        line
        for line in runtime_lines
        if line["level"] == "DEBUG" and str(line["logger"]).startswith("botocore")
    ]
    if name == "Loud":  # the control: with log_item_keys the values are there to be found
        assert sdk_debug, "botocore logs at DEBUG when item values may be logged"
        assert len(leaked) == 6
    else:
        assert sdk_debug == []
        assert leaked == [], "a key value reached the logs at DEBUG"


def test_a_proxy_in_this_process_environment_does_not_reach_the_function(
    app: Any, ddb: Any, ddb_local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    function, target_id, target = app["Plain"]
    table = new_target(ddb, target)
    items = messages("proxy", 5)
    put_items(ddb, table, items)
    with monkeypatch.context() as env:  # this process's own clients are made before it
        for name in PROXY_VARIABLES:
            env.setenv(name, CLOSED_PORT_PROXY)
        with SubprocessInvoker.for_function(
            function,
            {target_id: table},
            ddb_local.endpoint_url,
            stderr=subprocess.DEVNULL,
        ) as invoker:
            answer = invoker.invoke(inserts(items))
    assert answer == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["messageId"]) == set()


# --- a tiny handler in tmp_path: no DynamoDB, no Java ----------------------------------------

FAKE_HANDLER = """
import json, logging, os, sys, time

logging.getLogger("fake").setLevel(logging.INFO)


class StaleBatch(Exception):
    pass


def handler(event, context):
    print(json.dumps({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Namespace": "T",
        "Dimensions": [["FunctionName"]], "Metrics": [{"Name": "Seen", "Unit": "Count"}]}]},
        "FunctionName": context.function_name, "Seen": event.get("seen", 1)}))
    print("plain output")
    logging.getLogger("fake").info("handled %s", event.get("seen", 1))
    if event.get("raise"):
        raise StaleBatch("not this one")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        sys.stdout.flush()
        os._exit(event["exit"])
    return {"pid": os.getpid(), "left_ms": context.get_remaining_time_in_millis(),
            "arn": context.invoked_function_arn, "cwd": os.getcwd(),
            "proxy": sorted(k for k in os.environ if k.lower().endswith("_proxy"))}
"""


@pytest.fixture
def fake_asset(tmp_path: Path) -> Path:
    asset = tmp_path / "asset"
    asset.mkdir()
    (asset / "fake.py").write_text(FAKE_HANDLER)
    return asset


@pytest.fixture
def fake(fake_asset: Path, tmp_path: Path) -> Iterator[Any]:
    """fake(**options) -> (invoker of fake.handler, its log file)."""
    started: list[tuple[SubprocessInvoker, Any]] = []

    def start(**options: Any) -> tuple[SubprocessInvoker, Path]:
        log = tmp_path / f"fake-{len(started)}.log"
        sink = log.open("w")
        options.setdefault("timeout_s", 5)
        environment = options.pop("environment", {"AWS_LAMBDA_LOG_FORMAT": "JSON"})
        invoker = SubprocessInvoker(
            fake_asset, options.pop("handler", "fake.handler"), environment, stderr=sink, **options
        )
        started.append((invoker, sink))
        return invoker, log

    yield start
    for invoker, sink in started:
        invoker.close()
        sink.close()


def test_the_handler_runs_from_its_asset_in_one_warm_process(fake: Any, fake_asset: Path) -> None:
    invoker, log = fake(function_name="fakefn", timeout_s=30)
    first = invoker.invoke({"seen": 2})
    second = invoker.invoke({"seen": 3})

    assert first["pid"] == second["pid"], "a warm container"
    assert first["cwd"] == str(fake_asset)
    assert first["arn"].endswith(":function:fakefn")
    assert 0 < first["left_ms"] <= 30_000
    assert invoker.metrics == {"Seen": 5}
    invoker.close()
    text = log.read_text()
    assert text.count("plain output\n") == 2, "other output is forwarded line by line"
    handled = [json.loads(line) for line in text.splitlines() if '"handled' in line]
    assert [line["message"] for line in handled] == ["handled 2", "handled 3"]
    assert all(line["requestId"] for line in handled)


def test_a_handler_that_raises_is_a_function_error_of_its_type(fake: Any) -> None:
    invoker, _ = fake()
    pid = invoker.invoke({})["pid"]

    with pytest.raises(FunctionError) as raised:
        invoker.invoke({"raise": True, "seen": 4})

    assert raised.value.error_type == "StaleBatch"
    assert "not this one" in str(raised.value)
    assert invoker.metrics == {"Seen": 5}, "what it emitted before raising still counts"
    assert invoker.invoke({})["pid"] == pid, "a handled error keeps the container"


def test_a_handler_past_its_timeout_is_killed_and_the_next_invocation_works(fake: Any) -> None:
    invoker, _ = fake(timeout_s=1)
    pid = invoker.invoke({})["pid"]

    with pytest.raises(FunctionError) as raised:
        invoker.invoke({"sleep": 600})

    assert raised.value.error_type == "Sandbox.Timedout"
    after = invoker.invoke({})
    assert after["pid"] != pid, "a fresh container after a timeout"


def test_a_runtime_that_exits_is_an_exit_error_and_the_next_invocation_works(fake: Any) -> None:
    invoker, log = fake()
    pid = invoker.invoke({})["pid"]

    with pytest.raises(FunctionError) as raised:
        invoker.invoke({"exit": 3, "seen": 10})

    assert raised.value.error_type == "Runtime.ExitError"
    assert "exit status 3" in str(raised.value)
    assert invoker.metrics == {"Seen": 11}, "what it printed before exiting still counts"
    assert invoker.invoke({})["pid"] != pid


@pytest.mark.parametrize(
    ("handler", "source", "error_type"),
    [
        ("missing.handler", None, "Runtime.ImportModuleError"),
        ("broken.handler", "def handler(event, context)\n", "Runtime.UserCodeSyntaxError"),
        ("fake.nothing", None, "Runtime.HandlerNotFound"),
    ],
)
def test_an_init_error_is_a_function_error_of_the_runtime_type(
    fake: Any, fake_asset: Path, handler: str, source: str | None, error_type: str
) -> None:
    if source is not None:
        (fake_asset / (handler.split(".")[0] + ".py")).write_text(source)
    invoker, log = fake(handler=handler)

    for _ in range(2):  # every invocation initializes again, as in Lambda
        with pytest.raises(FunctionError) as raised:
            invoker.invoke({})
        assert raised.value.error_type == error_type
    invoker.close()
    errors = [json.loads(line) for line in log.read_text().splitlines() if error_type in line]
    assert len(errors) == 2 and errors[0]["level"] == "ERROR"


def test_a_proxy_in_this_process_environment_does_not_reach_the_runtime(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, CLOSED_PORT_PROXY)
    invoker, _ = fake()

    assert invoker.invoke({})["proxy"] == []
    assert invoker.invoke({})["proxy"] == [], "and the runtime client reached its API twice"


def test_the_text_log_format_into_a_binary_file(fake_asset: Path, tmp_path: Path) -> None:
    log = tmp_path / "text.log"
    with (
        log.open("wb") as sink,
        SubprocessInvoker(fake_asset, "fake.handler", {}, stderr=sink) as invoker,
    ):
        invoker.invoke({"seen": 6})
        assert invoker.metrics == {"Seen": 6}
    lines = log.read_text().splitlines()
    assert "plain output" in lines
    assert any(line.startswith("[INFO]") and line.endswith("handled 6") for line in lines)


def test_the_runtime_api_refuses_an_answer_for_another_request() -> None:
    with RuntimeApi("arn:aws:lambda:us-east-1:123456789012:function:f") as api:
        request_id = api.invoke(b'{"a": 1}', timeout_s=3)
        host, port = api.address.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", f"{PREFIX}/invocation/next")
        response = connection.getresponse()
        assert response.read() == b'{"a": 1}'
        assert response.getheader("Lambda-Runtime-Aws-Request-Id") == request_id
        assert int(response.getheader("Lambda-Runtime-Deadline-Ms") or 0) == api.deadline_ms(
            request_id
        )
        connection.request("POST", f"{PREFIX}/invocation/other/response", body=b"{}")
        refused = connection.getresponse()
        assert (refused.status, json.loads(refused.read())["errorType"]) == (
            400,
            "InvalidRequestID",
        )
        assert api.answer() is None
        connection.request("POST", f"{PREFIX}/invocation/{request_id}/response", body=b"[2]")
        assert connection.getresponse().status == 202
        answer = api.answer(timeout_s=10)
        assert answer is not None and (answer.kind, answer.payload()) == ("response", [2])
