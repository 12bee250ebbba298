"""Ctrl-C and resume: a real `stream-scavenger run --table` interrupted, then run again.

The command runs as a subprocess in its own process group, against tables on the suite's
DynamoDB Local (through a loopback proxy on the first run), and gets SIGINT as a terminal's
Ctrl-C sends it (to the command and its function's worker) in the middle of a batch, once
its checkpoint file shows a few finished batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stream_scavenger.local.scenario import example_app, synthesize
from testkit.proxy import Fault, FaultProxy

pytestmark = pytest.mark.ddb
SCRIPT = Path(sys.executable).parent / "stream-scavenger"
RECORDS, BATCH = 2000, 100  # the example app's mapping: batches of 100


def key(i: int, prefix: str = "m") -> dict[str, Any]:
    return {"messageId": {"S": f"{prefix}{i}"}, "createdAt": {"N": str(i)}}


def create(ddb: Any, name: str, stream: bool) -> None:
    extra = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "messageId", "KeyType": "HASH"},
            {"AttributeName": "createdAt", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "messageId", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **(extra if stream else {}),
    )


def put_all(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        ddb.batch_write_item(RequestItems={table: requests})


def stream_records(streams: Any, arn: str) -> list[tuple[int, str]]:
    """(sequence number, messageId) of every record of the stream's one shard, in order."""
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[tuple[int, str]] = []
    while True:
        page = streams.get_records(ShardIterator=iterator)
        if not page["Records"]:  # DynamoDB Local's end of an open shard (a test's shortcut)
            return records
        records += [
            (int(r["dynamodb"]["SequenceNumber"]), r["dynamodb"]["Keys"]["messageId"]["S"])
            for r in page["Records"]
        ]
        iterator = page["NextShardIterator"]


def checkpoint_of(directory: Path, arn: str) -> int | None:
    """The one shard's saved sequence number, if a checkpoint file is there yet."""
    files = list(directory.glob("*.json"))
    if not files:
        return None
    ((key, entry),) = json.loads(files[0].read_text()).items()
    assert key.startswith(f"{arn} "), key  # the stream's, for one function and configuration
    if not entry["shards"]:
        return None
    (sequence_number,) = entry["shards"].values()
    return int(sequence_number)


def test_a_run_stopped_with_ctrl_c_resumes_after_the_last_finished_batch(
    ddb_local: Any, ddb: Any, ddb_streams: Any, tmp_path: Path
) -> None:
    assembly = synthesize([sys.executable, str(example_app())])
    template = json.loads(next(assembly.glob("*.template.json")).read_text())
    ids = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"]
    (messages_id,) = [t for t in ids if t.startswith("Messages")]
    (staging_id,) = [t for t in ids if t.startswith("Staging")]
    messages, staging = f"interrupt{os.getpid()}-messages", f"interrupt{os.getpid()}-staging"
    create(ddb, messages, stream=True)
    create(ddb, staging, stream=False)
    put_all(ddb, staging, [key(i) for i in range(RECORDS)] + [key(i, "u") for i in range(50)])
    put_all(ddb, messages, [key(i) for i in range(RECORDS)])
    arn = ddb.describe_table(TableName=messages)["Table"]["LatestStreamArn"]
    records = stream_records(ddb_streams, arn)
    assert len(records) == RECORDS
    signalled: list[int] = []  # the checkpoint (sequence number) when Ctrl-C was sent
    saved_in = tmp_path / ".stream-scavenger"

    def ctrl_c_mid_batch(index: int, request: dict[str, Any]) -> Fault | None:
        """Each batch of 100 is 4 BatchWriteItem requests: hold the second of a batch once
        the checkpoint file shows 3 finished batches, send Ctrl-C, and never forward it."""
        claimed = checkpoint_of(saved_in, arn) or 0
        if signalled or index % 4 != 1 or claimed < records[3 * BATCH - 1][0]:
            return None
        signalled.append(claimed)
        os.killpg(first.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the command and its worker
        # Held until the command has exited on the signal: the request is never answered
        # while it could still act on the answer.
        with contextlib.suppress(subprocess.TimeoutExpired):
            first.wait(timeout=120)
        return Fault.error("InternalServerError", 500)

    def start(name: str, endpoint_url: str) -> subprocess.Popen[bytes]:
        command = [
            str(SCRIPT), "run", "--cloud-assembly", str(assembly), "--endpoint-url", endpoint_url,
            "--table", f"{messages_id}={messages}", "--table", f"{staging_id}={staging}",
        ]  # fmt: skip
        out, err = (tmp_path / f"{name}.out").open("wb"), (tmp_path / f"{name}.err").open("wb")
        with out, err:  # the child keeps its own copies
            return subprocess.Popen(
                command, cwd=tmp_path, stdout=out, stderr=err, start_new_session=True
            )

    with FaultProxy(ddb_local.endpoint_url, ctrl_c_mid_batch) as proxy:
        first = start("first", proxy.url)
        assert first.wait(timeout=300) == 130, (tmp_path / "first.err").read_text()[-3000:]
    assert signalled, "the run ended before its checkpoint showed 3 batches"

    checkpoint = checkpoint_of(saved_in, arn)
    assert checkpoint == signalled[0]  # the batch in flight is not claimed
    claimed = [m for sequence, m in records if sequence <= checkpoint]
    in_flight = [m for _, m in records[len(claimed) : len(claimed) + BATCH]]
    assert 3 * BATCH <= len(claimed) < RECORDS and len(claimed) % BATCH == 0
    present = {i["messageId"]["S"] for i in ddb.scan(TableName=staging)["Items"]}
    assert not present & set(claimed)  # every batch it claims is finished
    assert present & set(in_flight)  # and the one it was in was not

    second = start("second", ddb_local.endpoint_url)
    assert second.wait(timeout=300) == 0, (tmp_path / "second.err").read_text()[-3000:]
    out = (tmp_path / "second.out").read_text()
    rest = RECORDS - len(claimed)
    assert "resuming after it" in out
    assert f"records read: {rest}," in out and f"invocations: {math.ceil(rest / BATCH)}," in out
    left = {i["messageId"]["S"] for i in ddb.scan(TableName=staging)["Items"]}
    assert left == {f"u{i}" for i in range(50)}
