"""The backfill worker, through the entry point a state machine calls
(``scavenger.backfill.handler``), segment by segment against DynamoDB Local: each answer is
the next call's event until ``done``, as the state machine's loop passes it on.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sfnkit import FakeStepFunctions

from stream_scavenger import backfill_execution as deployed
from stream_scavenger import cli
from stream_scavenger.runtime.scavenger import backfill as worker
from stream_scavenger.runtime.scavenger.config import (
    BACKFILL_DONE,
    BACKFILL_HELD_AT,
    BACKFILL_SEGMENT,
    BACKFILL_START_KEY,
    BACKFILL_TOTAL_SEGMENTS,
    BACKFILL_TOTALS,
    BackfillConfig,
    ScavengerConfig,
    TargetConfig,
)
from stream_scavenger.runtime.scavenger.handler import container_scavenger
from testkit.proxy import Fault, FaultProxy

pytestmark = pytest.mark.ddb
ITEMS = 120
PAID = json.dumps({"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}})
_names = itertools.count()


def create(ddb: Any, name: str, keys: dict[str, str]) -> None:
    hash_key, range_key = keys
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in keys.items()],
        BillingMode="PAY_PER_REQUEST",
    )


def put(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        ddb.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )


def scan(ddb: Any, table: str, attribute: str) -> set[str]:
    pages = ddb.get_paginator("scan").paginate(TableName=table)
    return {item[attribute]["S"] for page in pages for item in page["Items"]}


class OnePage:
    """A context with time for one page: plenty before it, less than the margin after."""

    def __init__(self) -> None:
        self._answers = iter([120_000, 1_000])

    def get_remaining_time_in_millis(self) -> int:
        return next(self._answers, 1_000)


@pytest.fixture
def tables(ddb: Any) -> dict[str, str]:
    n = next(_names)
    names = {t: f"bfw{n}-{t}" for t in ("messages", "staging", "design")}
    keys = {"messageId": "S", "createdAt": "N"}
    create(ddb, names["messages"], keys)
    create(ddb, names["staging"], keys)
    create(ddb, names["design"], {"pk": "S", "sk": "S"})
    copies = [{"messageId": {"S": f"m{i}"}, "createdAt": {"N": str(i)}} for i in range(ITEMS)]
    status = [{"status": {"S": "OPEN" if i % 3 == 0 else "PAID"}} for i in range(ITEMS)]
    put(ddb, names["messages"], [{**c, **s} for c, s in zip(copies, status, strict=True)])
    put(ddb, names["staging"], copies + [{**copies[0], "messageId": {"S": "unrelated"}}])
    put(
        ddb,
        names["design"],
        [{"pk": {"S": f"STAGING#m{i}"}, "sk": {"S": f"MSG#{i}"}} for i in range(ITEMS)],
    )
    return names


@pytest.fixture
def environment(
    ddb_local: Any, tables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackfillConfig]:
    """The worker's environment as the construct writes it, DynamoDB at DynamoDB Local."""
    config = ScavengerConfig(
        (
            TargetConfig(
                tables["staging"],
                {"messageId": "messageId", "createdAt": "createdAt"},
                frozenset({"INSERT"}),
                {"messageId": "S", "createdAt": "N"},
                "createdAt",
            ),
            TargetConfig(
                tables["design"],
                {"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"},
                frozenset({"INSERT"}),
                {"pk": "S", "sk": "S"},
                "sk",
            ),
        )
    )
    settings = BackfillConfig(
        tables["messages"], ("messageId", "createdAt"), filters=(PAID,), page_size=17
    )
    env = {
        **config.to_env(),
        **settings.to_env(),
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_local.endpoint_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    container_scavenger.cache_clear()
    worker._scan_client.cache_clear()
    yield settings
    container_scavenger.cache_clear()
    worker._scan_client.cache_clear()


def run_segment(segment: int, segments: int) -> list[dict[str, Any]]:
    """Call the worker as the state machine's loop does, until the segment is done."""
    event: dict[str, Any] = {BACKFILL_SEGMENT: segment, BACKFILL_TOTAL_SEGMENTS: segments}
    answers = []
    while True:
        answer = worker.handler(event, OnePage())
        json.dumps(answer)  # what Step Functions carries must be JSON
        answers.append(answer)
        if answer[BACKFILL_DONE]:
            return answers
        assert len(answers) < 50, "the worker makes no progress"
        event = answer


def test_segment_by_segment_it_deletes_exactly_the_copies_the_filter_selects(
    ddb: Any, tables: dict[str, str], environment: BackfillConfig
) -> None:
    segments = 3
    finals = []
    for segment in range(segments):
        answers = run_segment(segment, segments)
        assert all(a[BACKFILL_SEGMENT] == segment for a in answers)
        assert all(a[BACKFILL_START_KEY] is not None for a in answers[:-1])
        assert answers[-1][BACKFILL_START_KEY] is None and answers[-1][BACKFILL_HELD_AT] is None
        finals.append(answers[-1][BACKFILL_TOTALS])
    paid = {f"m{i}" for i in range(ITEMS) if i % 3}
    assert scan(ddb, tables["staging"], "messageId") == {f"m{i}" for i in range(ITEMS)} - paid | {
        "unrelated"
    }
    assert scan(ddb, tables["design"], "pk") == {
        f"STAGING#m{i}" for i in range(ITEMS) if i % 3 == 0
    }
    assert sum(f["items"] for f in finals) == ITEMS
    assert sum(f["selected"] for f in finals) == len(paid)
    assert sum(f["targets"][tables["design"]]["deleted"] for f in finals) == len(paid)
    assert all(f["failed_count"] == 0 for f in finals)
    assert sum(f["pages"] for f in finals) >= ITEMS // 17


def test_a_dry_run_worker_counts_and_deletes_nothing(
    ddb: Any, tables: dict[str, str], environment: BackfillConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = json.loads(os.environ["SCAVENGER_CONFIG"])
    monkeypatch.setenv("SCAVENGER_CONFIG", json.dumps({**config, "dry_run": True}))
    container_scavenger.cache_clear()
    worker._scan_client.cache_clear()
    (final,) = run_segment(0, 1)[-1:]
    totals = final[BACKFILL_TOTALS]
    assert totals["selected"] == sum(1 for i in range(ITEMS) if i % 3)
    assert totals["targets"][tables["staging"]]["deleted"] == totals["selected"]  # would delete
    assert len(scan(ddb, tables["staging"], "messageId")) == ITEMS + 1


def test_a_segment_out_of_range_is_refused(environment: BackfillConfig) -> None:
    with pytest.raises(ValueError, match="segment 3 is not one of 0..2"):
        worker.handler({BACKFILL_SEGMENT: 3, BACKFILL_TOTAL_SEGMENTS: 3}, OnePage())


# ---- the state machine's definition, run as Step Functions runs it (tests/sfnkit.py) ------


@functools.cache
def _synthesized_template() -> tuple[str, dict[str, Any]]:
    """The backfill's definition (its worker as ``"worker"``) and its worker's environment
    (the tables as references), synthesized once for the module."""
    import aws_cdk as cdk
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk.assertions import Template

    from stream_scavenger import BackfillOptions, ScavengerTarget, StreamScavenger
    from stream_scavenger.runtime.scavenger.config import BACKFILL_HANDLER

    stack = cdk.Stack(cdk.App(), "Backfill")
    s, n = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER
    keys: dict[str, Any] = {
        "partition_key": dynamodb.Attribute(name="messageId", type=s),
        "sort_key": dynamodb.Attribute(name="createdAt", type=n),
    }
    design = dynamodb.Table(
        stack,
        "design",
        partition_key=dynamodb.Attribute(name="pk", type=s),
        sort_key=dynamodb.Attribute(name="sk", type=s),
    )
    StreamScavenger(
        stack,
        "Scavenger",
        source_table=dynamodb.Table(stack, "messages", **keys),
        targets=[
            ScavengerTarget(dynamodb.Table(stack, "staging", **keys)),
            ScavengerTarget(
                design, key_mapping={"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"}
            ),
        ],
        filters=[json.loads(PAID)],
        backfill=BackfillOptions(segments=3, max_concurrency=2, page_size=17),
    )
    template = Template.from_stack(stack)
    (function,) = [
        f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == BACKFILL_HANDLER
    ]
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "worker" for p in parts)
    return text, function["Environment"]["Variables"]


def synthesized(tables: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The definition and the worker's environment, the tables those of DynamoDB Local."""
    text, variables = _synthesized_template()

    def real(value: Any) -> str:
        if isinstance(value, str):
            return value
        (name,) = [t for t in tables if value["Ref"].startswith(t)]
        return tables[name]

    return json.loads(text), {k: real(v) for k, v in variables.items()}


WORKER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:Backfill-Worker-AbC123"


@pytest.fixture
def machine(
    tables: dict[str, str], monkeypatch: pytest.MonkeyPatch, ddb_local: Any
) -> Iterator[FakeStepFunctions]:
    """The synthesized state machine in a fake Step Functions, its worker the real handler
    on DynamoDB Local; the CLI's Step Functions and Lambda clients answered by the fake."""
    definition, env = synthesized(tables)
    for name, value in {
        **env,
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_local.endpoint_url,
        "AWS_ENDPOINT_URL_SFN": "http://127.0.0.1:9",  # never real AWS
        "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(name, value)
    container_scavenger.cache_clear()
    worker._scan_client.cache_clear()
    fake = FakeStepFunctions(
        definition, WORKER_ARN, lambda event: worker.handler(event, OnePage()), env
    )
    real_client = cli._client
    fakes = {"stepfunctions": fake.client("stepfunctions"), "lambda": fake.client("lambda")}
    monkeypatch.setattr(
        cli, "_client", lambda service, url: fakes.get(service) or real_client(service, url)
    )
    monkeypatch.setattr(deployed, "POLL_S", 0.01)
    yield fake
    fake.go.set()
    for execution in fake.executions.values():
        if execution.thread:
            execution.thread.join(60)
    container_scavenger.cache_clear()
    worker._scan_client.cache_clear()


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, int]]:
    """The CLI's progress bars: total, initial, and what the updates added up to."""
    made: list[dict[str, int]] = []

    def progress(total: int, **options: Any) -> Any:
        bar = {"total": total, "initial": options.get("initial", 0), "added": 0}
        made.append(bar)
        return (lambda n: bar.update(added=bar["added"] + n)), (lambda: None)

    monkeypatch.setattr(cli, "_progress", progress)
    return made


def assert_backfilled(ddb: Any, tables: dict[str, str]) -> None:
    kept = {f"m{i}" for i in range(ITEMS) if i % 3 == 0}
    assert scan(ddb, tables["staging"], "messageId") == kept | {"unrelated"}
    assert scan(ddb, tables["design"], "pk") == {f"STAGING#{m}" for m in kept}


def test_deployed_starts_the_state_machine_and_reports_every_segment(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions,
    capsys: pytest.CaptureFixture[str], bars: list[dict[str, int]],
) -> None:  # fmt: skip
    assert cli.main(["backfill", "--deployed", machine.name]) == 0
    assert bars == [{"total": ITEMS, "initial": 0, "added": ITEMS}]
    out = capsys.readouterr().out
    (execution,) = machine.executions.values()
    assert f"execution {execution.arn}: started" in out
    output = json.loads(execution.output or "null")
    assert [segment[BACKFILL_SEGMENT] for segment in output] == [0, 1, 2]
    assert all(s[BACKFILL_DONE] and s[BACKFILL_HELD_AT] is None for s in output)
    assert_backfilled(ddb, tables)
    selected = sum(1 for i in range(ITEMS) if i % 3)
    assert f"backfill of {tables['messages']} as INSERT records (3 segment(s)" in out
    assert f"items scanned: {ITEMS}, filtered out: {ITEMS - selected}, selected: {selected}" in out
    design = re.search(rf"^{tables['design']}\s+(\d+)\s+(\d+)", out, re.MULTILINE)
    assert design and design.groups() == (str(selected), str(selected))


def runs(machine: FakeStepFunctions) -> list[tuple[int, str]]:
    """Each worker call that ran: its segment and the position it scanned from."""
    return [
        (e[BACKFILL_SEGMENT], json.dumps(e.get(BACKFILL_START_KEY), sort_keys=True))
        for e in machine.inputs
    ]


@pytest.mark.parametrize(
    ("stop", "status", "again"),
    [("fail_calls", "FAILED", 0), ("abort_calls", "ABORTED", 1), ("timeout_calls", "TIMED_OUT", 1)],
)
def test_an_execution_that_stopped_is_redriven_and_goes_on_where_it_stopped(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions, stop: str, status: str,
    again: int, capsys: pytest.CaptureFixture[str], bars: list[dict[str, int]],
) -> None:  # fmt: skip
    getattr(machine, stop).add(4)  # the fourth worker call fails, or the execution stops then
    started = time.monotonic()
    assert cli.main(["backfill", "--deployed", machine.arn]) == 1
    following_s = time.monotonic() - started
    out = capsys.readouterr().out
    (execution,) = machine.executions.values()
    assert execution.status == status and machine.calls == 4
    assert f"execution {status}" in out and f"--deployed {execution.arn}) redrives it" in out
    assert len(scan(ddb, tables["staging"], "messageId")) > ITEMS // 3 + 1  # not done
    time.sleep(2.0)  # the execution sits stopped: not part of its running time

    started = time.monotonic()
    assert cli.main(["backfill", "--deployed", execution.arn]) == 0
    following_s += time.monotonic() - started
    out = capsys.readouterr().out
    assert "redriven (" in out and execution.redrive_count == 1
    first, second = bars  # the second bar starts where the execution was
    # (the redriven execution may have gone on before the command's first look)
    assert 0 < first["added"] <= second["initial"]
    assert second["initial"] + second["added"] == ITEMS
    assert_backfilled(ddb, tables)
    assert f"items scanned: {ITEMS}," in out
    seconds = re.search(r"seconds: ([0-9.]+)", out)
    assert seconds and float(seconds.group(1)) < following_s  # the 2 s stopped not counted
    # The redrive went on from each segment's last answer, not from its start: only the call
    # whose answer was lost (it ran on as the execution stopped) scanned its pages again.
    scans = runs(machine)
    assert len(scans) - len(set(scans)) == again


def test_ctrl_c_leaves_the_execution_running_and_the_same_command_follows_it(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    machine.go.clear()  # the execution waits before its first worker call

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(deployed.time, "sleep", interrupted)
        assert cli.main(["backfill", "--deployed", machine.arn]) == 130
    captured = capsys.readouterr()
    (execution,) = machine.executions.values()
    assert execution.status == "RUNNING"
    assert f"follow it with `stream-scavenger backfill --deployed {execution.arn}`" in captured.err
    machine.go.set()
    assert cli.main(["backfill", "--deployed", execution.arn]) == 0
    assert f"execution {execution.arn}: following (running)" in capsys.readouterr().out
    assert_backfilled(ddb, tables)
    assert len(machine.executions) == 1


def test_an_unreadable_worker_configuration_is_followed_without_a_total(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    machine.environment_error = "Lambda was unable to decrypt the environment variables"
    assert cli.main(["backfill", "--deployed", machine.arn]) == 0
    captured = capsys.readouterr()
    assert "unable to decrypt" in captured.err and "followed without a total" in captured.err
    assert f"backfill of the source of {WORKER_ARN}" in captured.out
    assert_backfilled(ddb, tables)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--segments", "2"], "--segments does not apply with --deployed"),
        (["--dry-run"], "--dry-run does not apply with --deployed"),
        (["--checkpoint", "x.json"], "--checkpoint does not apply with --deployed"),
        (["--segments", "0"], "--segments does not apply with --deployed"),
    ],
)
def test_options_of_the_local_backfill_are_refused_with_deployed(
    machine: FakeStepFunctions, arguments: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert cli.main(["backfill", "--deployed", machine.arn, *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not machine.executions


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("NoSuchMachine", "no state machine named NoSuchMachine"),
        ("arn:aws:states:us-east-1:123456789012:stateMachine:Gone", "StateMachineDoesNotExist"),
        ("arn:aws:states:us-east-1:123456789012:execution:Gone:x", "ExecutionDoesNotExist"),
    ],
)
def test_a_state_machine_or_execution_not_found_is_a_set_up_error(
    machine: FakeStepFunctions, given: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["backfill", "--deployed", given]) == 2
    assert message in capsys.readouterr().err


def test_a_finished_execution_is_reported_again_without_running_it(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    machine.page_limit = 3  # the history in many pages
    assert cli.main(["backfill", "--deployed", machine.arn]) == 0
    (execution,) = machine.executions.values()
    calls = machine.calls
    capsys.readouterr()
    assert cli.main(["backfill", "--deployed", execution.arn]) == 0
    out = capsys.readouterr().out
    assert f"execution {execution.arn}: following (succeeded)" in out
    assert f"items scanned: {ITEMS}," in out and machine.calls == calls


def test_an_execution_that_cannot_be_redriven_says_to_start_a_new_one(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    machine.fail_calls.add(2)
    assert cli.main(["backfill", "--deployed", machine.arn]) == 1
    (execution,) = machine.executions.values()
    machine.not_redrivable = "Execution history event limit exceeded"
    capsys.readouterr()
    assert cli.main(["backfill", "--deployed", execution.arn]) == 1
    out = capsys.readouterr().out
    assert "not redrivable (failed: Execution history event limit exceeded)" in out
    assert f"a new execution (--deployed {machine.arn}) scans from the start" in out
    assert "redrives it" not in out and execution.redrive_count == 0


def test_a_state_machine_that_is_not_a_backfill_is_refused_before_it_starts(
    machine: FakeStepFunctions, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.definition = {
        "StartAt": "Call",
        "States": {"Call": {"Type": "Task", "Resource": "worker", "End": True}},
    }
    assert cli.main(["backfill", "--deployed", machine.arn]) == 2
    assert "is not a stream-scavenger backfill" in capsys.readouterr().err
    assert not machine.executions


def test_an_error_while_following_says_how_to_follow_again(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from sfnkit import ServiceError

    def denied(**_: Any) -> Any:
        raise ServiceError("AccessDeniedException", "not authorized: states:GetExecutionHistory")

    monkeypatch.setattr(machine, "_op_GetExecutionHistory", denied)
    assert cli.main(["backfill", "--deployed", machine.arn]) == 2
    err = capsys.readouterr().err
    (execution,) = machine.executions.values()
    assert "AccessDeniedException" in err
    assert f"`stream-scavenger backfill --deployed {execution.arn}` follows it again" in err


def test_records_not_deleted_make_a_succeeded_execution_exit_1(
    ddb: Any, tables: dict[str, str], machine: FakeStepFunctions, ddb_local: Any,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def poison(index: int, body: dict[str, Any]) -> Fault | None:
        return Fault.http(500) if '"m1"' in json.dumps(body.get("RequestItems", {})) else None

    with FaultProxy(ddb_local.endpoint_url, poison) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        container_scavenger.cache_clear()
        worker._scan_client.cache_clear()
        assert cli.main(["backfill", "--deployed", machine.arn]) == 1
    out = capsys.readouterr().out
    (execution,) = machine.executions.values()
    assert execution.status == "SUCCEEDED"
    assert "not deleted: " in out and "a new execution scans again from the start" in out
    held = [s for s in json.loads(execution.output or "[]") if s[BACKFILL_HELD_AT] is not None]
    assert len(held) == 1
    assert "m1" in scan(ddb, tables["staging"], "messageId")
