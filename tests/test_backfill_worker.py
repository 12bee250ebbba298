"""The backfill worker, through the entry point a state machine calls
(``scavenger.backfill.handler``), segment by segment against DynamoDB Local: each answer is
the next call's event until ``done``, as the state machine's loop passes it on.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

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


# ---- the state machine's definition, run as Step Functions would run it ------------------


def synthesized(tables: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The backfill's definition and its worker's environment, from a synthesized template
    (the tables' references replaced by the DynamoDB Local tables)."""
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

    def real(value: Any) -> str:
        if isinstance(value, str):
            return value
        (name,) = [t for t in tables if value["Ref"].startswith(t)]
        return tables[name]

    (worker,) = [
        f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == BACKFILL_HANDLER
    ]
    env = {k: real(v) for k, v in worker["Environment"]["Variables"].items()}
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "worker" for p in parts)
    return json.loads(text), env


def execute(machine: dict[str, Any], state_input: Any) -> Any:
    """The states the backfill's definition uses, as Step Functions runs them; a Task calls
    the worker's handler (``payload_response_only``: its answer is the state's output)."""
    name, data = machine["StartAt"], state_input
    while True:
        state = machine["States"][name]
        kind = state["Type"]
        if kind == "Pass":
            ((key, expression),) = state["Parameters"].items()
            assert key.endswith(".$") and expression.startswith("States.ArrayRange(")
            first, last, step = (int(x) for x in expression[18:-1].split(","))
            data = {key[:-2]: list(range(first, last + 1, step))}
        elif kind == "Map":
            assert state["ItemsPath"].startswith("$.")
            items = data[state["ItemsPath"][2:]]
            results = []
            for item in items:
                selected = {
                    (k[:-2] if k.endswith(".$") else k): (item if v == "$$.Map.Item.Value" else v)
                    for k, v in state["ItemSelector"].items()
                }
                results.append(execute(state["ItemProcessor"], selected))
            data = results
        elif kind == "Task":
            assert state["Resource"] == "worker"
            data = json.loads(json.dumps(worker.handler(data, OnePage())))
        elif kind == "Choice":
            (choice,) = state["Choices"]
            variable = choice["Variable"]
            assert variable.startswith("$.")
            name = (
                choice["Next"]
                if data[variable[2:]] is choice["BooleanEquals"]
                else state["Default"]
            )
            continue
        elif kind == "Succeed":
            return data
        else:
            raise AssertionError(f"a state this test does not run: {kind}")
        if state.get("End"):
            return data
        name = state["Next"]


def test_the_synthesized_state_machine_backfills_every_segment(
    ddb: Any, tables: dict[str, str], monkeypatch: pytest.MonkeyPatch, ddb_local: Any
) -> None:
    machine, env = synthesized(tables)
    for name, value in {
        **env,
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_local.endpoint_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(name, value)
    container_scavenger.cache_clear()
    worker._scan_client.cache_clear()
    try:
        output = execute(machine, {})
    finally:
        container_scavenger.cache_clear()
        worker._scan_client.cache_clear()
    assert [segment[BACKFILL_SEGMENT] for segment in output] == [0, 1, 2]
    assert all(s[BACKFILL_DONE] and s[BACKFILL_HELD_AT] is None for s in output)
    assert sum(s[BACKFILL_TOTALS]["items"] for s in output) == ITEMS
    kept = {f"m{i}" for i in range(ITEMS) if i % 3 == 0}
    assert scan(ddb, tables["staging"], "messageId") == kept | {"unrelated"}
    assert scan(ddb, tables["design"], "pk") == {f"STAGING#{m}" for m in kept}
