"""A burst into an under-provisioned target, through the local event source mapping.

The function's own asset runs under Lambda's runtime client with the template's timeout,
and the mapping replays as Lambda does with the template's ``retry_attempts``; the
function's DynamoDB endpoint is the loopback proxy's capacity model (a token bucket of
:data:`UNITS` write units a second in front of DynamoDB Local). The bucket is emptied when
the burst's first batch is delivered, so what the table absorbs is exactly what it refills
while the invocations last, whatever the machine's speed before that.

Each invocation can delete about ``UNITS x (TIMEOUT_S - 0.8 s)`` keys (184), and a batch is
given up on after ``RETRY_ATTEMPTS + 1`` invocations (368 keys at most). With one batch per
burst (``batch_size`` above the burst), a burst of 250 needs a retry but fits; one of 600
cannot fit, and what is left must be exactly what reaches the on-failure destination.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from redrivekit import stream_records

from stream_scavenger import StreamScavenger
from stream_scavenger.local.assembly import FunctionDef, load_assembly
from stream_scavenger.local.event_source_mapping import (
    FileDestination,
    LocalEventSourceMapping,
    RunStats,
    create_table,
    table_names_for,
)
from stream_scavenger.local.invoker import SubprocessInvoker
from testkit.proxy import LoopbackProxy, WriteCapacity
from testkit.tables import put_items, scan_keys

pytestmark = pytest.mark.ddb  # the function's asset in a subprocess, against DynamoDB Local

#: Write units a second of the target table.
UNITS = 20
TIMEOUT_S = 10
RETRY_ATTEMPTS = 1
#: Larger than any burst here: one batch, so its retries are the whole story.
BATCH_SIZE = 1000
#: Needs 12.5 s of the table's capacity: more than one invocation, less than two.
ABSORBED = 250
#: Needs 30 s: more than the 2 x 9.2 s the batch's invocations have.
TOO_MANY = 600
#: Items of the target that no record names: they must stay.
UNRELATED = 20

Key = tuple[str, str]  # (messageId, createdAt) as DynamoDB returns them


class Messages(cdk.Stack):
    """The example app's two tables, with a scavenger sized for a short test."""

    def __init__(self, scope: cdk.App) -> None:
        super().__init__(scope, "Throttled")
        key = {
            "partition_key": dynamodb.Attribute(
                name="messageId", type=dynamodb.AttributeType.STRING
            ),
            "sort_key": dynamodb.Attribute(name="createdAt", type=dynamodb.AttributeType.NUMBER),
        }
        StreamScavenger(
            self,
            "Scavenger",
            source_table=dynamodb.Table(self, "Messages", **key),
            target_table=dynamodb.Table(self, "Staging", **key),
            batch_size=BATCH_SIZE,
            retry_attempts=RETRY_ATTEMPTS,
            timeout=cdk.Duration.seconds(TIMEOUT_S),
        )


@pytest.fixture(scope="module")
def function(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FunctionDef]:
    out = tmp_path_factory.mktemp("throttled") / "cdk.out"
    app = cdk.App(outdir=str(out))
    Messages(app)
    app.synth()
    (stack,) = load_assembly(out)
    (scavenger,) = stack.functions
    assert scavenger.mapping is not None
    props = scavenger.mapping.properties
    assert (props["MaximumRetryAttempts"], scavenger.timeout_s) == (RETRY_ATTEMPTS, TIMEOUT_S)
    return out, scavenger


@dataclass
class Burst:
    """What one burst left behind."""

    keys: list[Key]
    present: set[Key]
    unrelated_present: int
    run: RunStats
    #: The on-failure messages, and the records of the stream they cover.
    messages: list[dict[str, Any]]
    covered: list[Key]
    counts: dict[str, dict[str, int]]
    staging: str
    metrics: dict[str, float]

    @property
    def units(self) -> int:
        return self.counts["write_units"].get(self.staging, 0)

    @property
    def units_absent(self) -> int:
        return self.counts["write_units_absent"].get(self.staging, 0)


def burst(
    function: tuple[Path, FunctionDef], records: int, ddb_local: Any, ddb: Any, streams: Any
) -> Burst:
    """``records`` INSERTs into Messages, each naming a Staging item; the local mapping
    delivers them to the function, whose deletes go through the capacity model."""
    assembly, scavenger = function
    (stack,) = load_assembly(assembly)
    names = table_names_for(stack.tables, prefix=f"thr{uuid.uuid4().hex[:8]}-")
    arns = {lid: create_table(ddb, names[lid], t) for lid, t in stack.tables.items()}
    source = next(lid for lid in names if lid.startswith("Messages"))
    staging = names[next(lid for lid in names if lid.startswith("Staging"))]
    items = [{"messageId": f"m{i:04d}", "createdAt": i} for i in range(records)]
    unrelated = [{"messageId": f"other{i:02d}", "createdAt": i} for i in range(UNRELATED)]
    put_items(ddb, staging, items + unrelated)
    put_items(ddb, names[source], items)

    bucket = WriteCapacity(UNITS)
    delivered: list[int] = []
    failures = assembly.parent / f"failures-{records}.jsonl"
    with (
        LoopbackProxy(ddb_local.endpoint_url, capacity={staging: bucket}) as proxy,
        SubprocessInvoker.for_function(
            scavenger, names, proxy.url, stderr=subprocess.DEVNULL
        ) as invoker,
    ):

        def invoke(event: Any) -> Any:
            if not delivered:  # the burst meets an empty bank, however long set-up took
                bucket.take([1] * int(UNITS * bucket.burst_s + 1))
            delivered.append(len(event["Records"]))
            return invoker.invoke(event)

        run = LocalEventSourceMapping(
            streams,
            arns[source],
            invoke,
            scavenger.mapping.properties if scavenger.mapping else {},
            on_failure=FileDestination(failures),
        ).run()
        counts = proxy.counts()

    shard_id, stream = stream_records(streams, arns[source])
    messages = (
        [json.loads(line) for line in failures.read_text().splitlines()]
        if failures.exists()
        else []
    )
    covered: list[Key] = []
    for message in messages:
        info = message["DDBStreamBatchInfo"]
        assert info["shardId"] == shard_id
        first, last = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
        covered += [
            (r["dynamodb"]["Keys"]["messageId"]["S"], r["dynamodb"]["Keys"]["createdAt"]["N"])
            for r in stream
            if first <= int(r["dynamodb"]["SequenceNumber"]) <= last
        ]
    left = scan_keys(ddb, staging, ["messageId", "createdAt"])
    keys = [(item["messageId"], str(item["createdAt"])) for item in items]
    return Burst(
        keys=keys,
        present=left & set(keys),
        unrelated_present=sum(key[0].startswith("other") for key in left),
        run=run,
        messages=messages,
        covered=covered,
        counts=counts,
        staging=staging,
        metrics=dict(invoker.metrics),
    )


@pytest.fixture(scope="module")
def absorbed(
    function: tuple[Path, FunctionDef], ddb_local: Any, ddb: Any, ddb_streams: Any
) -> Iterator[Burst]:
    yield burst(function, ABSORBED, ddb_local, ddb, ddb_streams)


@pytest.fixture(scope="module")
def too_many(
    function: tuple[Path, FunctionDef], ddb_local: Any, ddb: Any, ddb_streams: Any
) -> Iterator[Burst]:
    yield burst(function, TOO_MANY, ddb_local, ddb, ddb_streams)


def test_a_burst_the_capacity_absorbs_leaves_the_destination_empty(absorbed: Burst) -> None:
    """250 keys at 20 units/s take two invocations (the first cannot delete more than
    about 20 x 10 + 25 of them); the retry finishes the work. Before pacing, each chunk
    gave up after eight attempts (about 3 s of backoff) and the batch went to the queue."""
    assert absorbed.present == set(), f"{len(absorbed.present)} keys left"
    assert absorbed.messages == [] and absorbed.run.records_given_up == 0
    assert absorbed.unrelated_present == UNRELATED
    assert absorbed.run.invocations == 2 and absorbed.run.partial_failures == 1
    assert absorbed.run.function_errors == 0
    assert absorbed.metrics.get("ThrottledOut") == 1  # the first ran out of time, throttled


def test_a_burst_it_cannot_absorb_sends_every_undeleted_record(too_many: Burst) -> None:
    """Nothing is lost: every key still there is covered by an on-failure message, after
    ``retry_attempts + 1`` invocations; nothing is deleted that no record named."""
    deleted = set(too_many.keys) - too_many.present
    assert deleted and too_many.present, "the scenario must overflow, and delete some"
    conditions = {m["requestContext"]["condition"] for m in too_many.messages}
    assert conditions == {"RetryAttemptsExhausted"}
    invoked = {m["requestContext"]["approximateInvokeCount"] for m in too_many.messages}
    assert invoked == {RETRY_ATTEMPTS + 1}
    covered = set(too_many.covered)
    assert len(covered) == len(too_many.covered) == too_many.run.records_given_up
    assert too_many.present - covered == set(), "an undeleted key's record was acknowledged"
    assert too_many.unrelated_present == UNRELATED
    assert too_many.run.function_errors == 0
    # What the alarm reads. Every invocation ran out of time held back by the table, but a
    # replay paced at the learned rate may see no throttle of its own and is not always
    # counted, so only the first (which throttled) is certain.
    assert (too_many.metrics.get("ThrottledOut") or 0) >= 1, too_many.metrics


def test_a_burst_it_cannot_absorb_sends_nothing_but_undeleted_records(too_many: Burst) -> None:
    """The on-failure message is a range of sequence numbers: it holds only undeleted
    records when what was deleted is the batch's head, keys sent in stream order."""
    sent_but_deleted = set(too_many.covered) - too_many.present
    assert sent_but_deleted == set(), (
        f"{len(sent_but_deleted)} of {len(too_many.covered)} records on the destination "
        "name keys already deleted"
    )


@pytest.mark.parametrize("scenario", ["absorbed", "too_many"])
def test_replays_spend_almost_no_write_units_on_items_already_gone(
    scenario: str, request: pytest.FixtureRequest
) -> None:
    """A replay acknowledges records this container confirmed (``ConfirmedDeletes``)
    instead of deleting their gone items again; what remains is a key whose request was
    still in flight when an invocation answered (none when the machine keeps up)."""
    outcome: Burst = request.getfixturevalue(scenario)
    deleted = len(outcome.keys) - len(outcome.present)
    assert outcome.units == deleted + outcome.units_absent  # every item here is one unit
    assert outcome.units_absent <= 0.05 * outcome.units, outcome.counts
