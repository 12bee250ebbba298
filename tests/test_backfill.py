"""`stream-scavenger backfill`: a source filled before any stream existed, scanned and scavenged.

One synthesized app (three scavengers of one source: a filtered two-target one with a key
template, a MODIFY-only one, a REMOVE-only one); tables made per test on the suite's
DynamoDB Local without a stream, named with --table.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb

from stream_scavenger import ScavengerTarget, StreamScavenger
from stream_scavenger.cli import main
from stream_scavenger.local.assembly import load_assembly
from testkit.proxy import Fault, FaultProxy, LoopbackProxy, WriteCapacity

pytestmark = pytest.mark.ddb
SCRIPT = Path(sys.executable).parent / "stream-scavenger"
S, N = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER
DESIGN_MAPPING = {"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"}
PAID = [{"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}}]
ITEMS = 240  # every third OPEN (filtered out), the rest PAID
_names = itertools.count()


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("backfill") / "cdk.out"))
    stack = cdk.Stack(app, "Backfill")
    key = {
        "partition_key": dynamodb.Attribute(name="messageId", type=S),
        "sort_key": dynamodb.Attribute(name="createdAt", type=N),
    }
    messages = dynamodb.Table(stack, "Messages", **key)
    staging = dynamodb.Table(stack, "Staging", **key)
    design = dynamodb.Table(
        stack,
        "Design",
        partition_key=dynamodb.Attribute(name="pk", type=S),
        sort_key=dynamodb.Attribute(name="sk", type=S),
    )
    StreamScavenger(
        stack,
        "Paid",
        source_table=messages,
        targets=[ScavengerTarget(staging), ScavengerTarget(design, key_mapping=DESIGN_MAPPING)],
        filters=PAID,
    )
    StreamScavenger(
        stack,
        "Modify",
        source_table=messages,
        targets=[ScavengerTarget(staging, event_names=["MODIFY"])],
        filters=PAID,
    )
    StreamScavenger(
        stack,
        "Remove",
        source_table=messages,
        targets=[ScavengerTarget(staging, event_names=["REMOVE"])],
    )
    return Path(app.synth().directory)


def logical_ids(assembly: Path) -> dict[str, str]:
    (stack,) = load_assembly(assembly)
    return {
        name: next(t for t in stack.tables if t.startswith(name))
        for name in ("Messages", "Staging", "Design")
    }


def create(ddb: Any, name: str, keys: dict[str, str]) -> None:
    """A table without a stream (the source was filled before any existed)."""
    names = list(keys)
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": names[0], "KeyType": "HASH"},
            {"AttributeName": names[1], "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in keys.items()],
        BillingMode="PAY_PER_REQUEST",
    )


def put(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        ddb.batch_write_item(RequestItems={table: requests})


def status(i: int) -> str:
    return "OPEN" if i % 3 == 0 else "PAID"


class Tables:
    """Messages (the source), its staging copies and design copies, plus unrelated items."""

    def __init__(self, ddb: Any, assembly: Path, items: int = ITEMS) -> None:
        self.ddb, self.items = ddb, items
        n = next(_names)
        self.messages, self.staging, self.design = (f"bf{n}-{t}" for t in ("m", "s", "d"))
        message_keys = {"messageId": "S", "createdAt": "N"}
        create(ddb, self.messages, message_keys)
        create(ddb, self.staging, message_keys)
        create(ddb, self.design, {"pk": "S", "sk": "S"})
        ids = logical_ids(assembly)
        self.options = [
            "--cloud-assembly",
            str(assembly),
            "--table",
            f"{ids['Messages']}={self.messages}",
            "--table",
            f"{ids['Staging']}={self.staging}",
            "--table",
            f"{ids['Design']}={self.design}",
        ]
        copies = [{"messageId": {"S": f"m{i}"}, "createdAt": {"N": str(i)}} for i in range(items)]
        put(ddb, self.messages, [{**c, "status": {"S": status(i)}} for i, c in enumerate(copies)])
        put(
            ddb,
            self.staging,
            copies + [{"messageId": {"S": f"u{i}"}, "createdAt": {"N": "1"}} for i in range(30)],
        )
        put(
            ddb,
            self.design,
            [{"pk": {"S": f"STAGING#m{i}"}, "sk": {"S": f"MSG#{i}"}} for i in range(items)]
            + [{"pk": {"S": f"OTHER#m{i}"}, "sk": {"S": f"MSG#{i}"}} for i in range(30)],
        )

    def staging_left(self) -> set[str]:
        return {i["messageId"]["S"] for i in self._scan(self.staging)}

    def design_left(self) -> set[str]:
        return {i["pk"]["S"] for i in self._scan(self.design)}

    def expected(self, selected: Any = lambda i: status(i) == "PAID") -> tuple[set[str], set[str]]:
        kept = [i for i in range(self.items) if not selected(i)]
        return (
            {f"m{i}" for i in kept} | {f"u{i}" for i in range(30)},
            {f"STAGING#m{i}" for i in kept} | {f"OTHER#m{i}" for i in range(30)},
        )

    def _scan(self, table: str) -> list[dict[str, Any]]:
        pages = self.ddb.get_paginator("scan").paginate(TableName=table)
        return [item for page in pages for item in page["Items"]]


def paid(*options: str) -> list[str]:
    return ["backfill", "--function", "Paid", *options]


def test_backfill_deletes_exactly_the_copies_of_the_items_the_filter_selects(
    ddb_local: Any, ddb: Any, assembly: Path, tmp_path: Path, capsys: Any
) -> None:
    t = Tables(ddb, assembly)
    checkpoint = tmp_path / "cp.json"
    url = ["--endpoint-url", ddb_local.endpoint_url]
    code = main(
        paid(
            *t.options,
            *url,
            "--segments",
            "3",
            "--page-size",
            "17",
            "--checkpoint",
            str(checkpoint),
        )
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (t.staging_left(), t.design_left()) == t.expected()
    selected = sum(status(i) == "PAID" for i in range(ITEMS))
    assert f"items scanned: {ITEMS}, filtered out: {ITEMS - selected}, selected: {selected}" in out
    assert re.search(rf"^{t.staging}\s+{selected}\s+{selected}\s+0\s+0$", out, re.M), out
    assert re.search(rf"^{t.design}\s+{selected}\s+{selected}\s+0\s+0$", out, re.M), out
    assert '"StreamScavenger"' not in out  # the handler's EMF lines are not printed
    saved = json.loads(checkpoint.read_text())
    assert saved["done"] == [[0, 2]] and saved["after"] == {} and saved["scanned"] == ITEMS
    assert saved["segments"] == 3 and saved["table"] == t.messages

    # The same command again: every segment is done, nothing is scanned.
    assert main(paid(*t.options, *url, "--segments", "3", "--checkpoint", str(checkpoint))) == 0
    assert "items scanned: 0," in capsys.readouterr().out
    # Other segments with that checkpoint: refused, nothing done.
    assert main(paid(*t.options, *url, "--segments", "4", "--checkpoint", str(checkpoint))) == 2
    err = capsys.readouterr().err
    assert "belongs to another backfill: segments 3 (now 4)" in err


def test_a_dry_run_changes_nothing_and_counts(
    ddb_local: Any, ddb: Any, assembly: Path, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    t = Tables(ddb, assembly)
    put(
        ddb,
        t.messages,
        [
            {
                "messageId": {"S": "x"},
                "createdAt": {"N": "7"},
                "status": {"S": "PAID"},
                "messageRef": {"S": "r"},
            }
        ],
    )
    before = (t.staging_left(), t.design_left())
    code = main(paid(*t.options, "--endpoint-url", ddb_local.endpoint_url, "--dry-run"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert (t.staging_left(), t.design_left()) == before
    assert not (tmp_path / ".stream-scavenger").exists()  # no checkpoint in a dry run
    selected = sum(status(i) == "PAID" for i in range(ITEMS)) + 1
    assert f"items scanned: {ITEMS + 1}, filtered out: {ITEMS - selected + 1}" in out
    assert f"distinct keys: {2 * selected}, duplicates: 0" in out
    assert re.search(r"^target\s+matched\s+would delete", out, re.M)
    assert re.search(rf"^{t.design}\s+{selected}\s+{selected}\s+0\s+0$", out, re.M), out
    assert "BatchWriteItem requests: 0," in out


def test_a_modify_only_scavenger_backfills_items_as_modify_records(
    ddb_local: Any, ddb: Any, assembly: Path, capsys: Any
) -> None:
    t = Tables(ddb, assembly, items=60)
    options = [*t.options, "--endpoint-url", ddb_local.endpoint_url, "--no-checkpoint"]
    assert main(["backfill", "--function", "Modify", *options]) == 0
    out = capsys.readouterr().out
    assert "as MODIFY records" in out
    assert t.staging_left() == t.expected()[0]
    assert len(t.design_left()) == 90  # not this scavenger's target


def test_a_remove_only_scavenger_is_refused(
    ddb_local: Any, ddb: Any, assembly: Path, capsys: Any
) -> None:
    t = Tables(ddb, assembly, items=10)
    options = [*t.options, "--endpoint-url", ddb_local.endpoint_url]
    assert main(["backfill", "--function", "Remove", *options]) == 2
    err = capsys.readouterr().err
    assert "acts on REMOVE only" in err and "docs/backfill.md" in err
    assert len(t.staging_left()) == 40


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--segments", "0"], "--segments must be 1..1,000,000, got 0"),
        (["--segments", "1000001"], "--segments must be 1..1,000,000"),
        (["--page-size", "0"], "--page-size must be 1..10,000, got 0"),
        (["--max-write-units", "0"], "--max-write-units must be more than 0"),
    ],
)
def test_options_out_of_range_are_refused(
    option: list[str], message: str, assembly: Path, capsys: Any, ddb_local: Any
) -> None:
    assert main(paid("--cloud-assembly", str(assembly), *option)) == 2
    assert message in capsys.readouterr().err


def test_the_write_budget_is_respected(
    ddb_local: Any, ddb: Any, assembly: Path, capsys: Any
) -> None:
    """Bound: the budget's bucket starts empty and banks at most one second, and each call
    takes an estimate that is at least its cost (one unit per key; these items are under
    1 KB) before it starts, so units by the end <= budget x elapsed exactly; the 5 % covers
    reading the clock here rather than inside the command."""
    t = Tables(ddb, assembly, items=180)  # 120 selected: 240 deletes
    budget = 80.0
    capacity = {t.staging: WriteCapacity(1e6), t.design: WriteCapacity(1e6)}
    with LoopbackProxy(ddb_local.endpoint_url, capacity=capacity) as proxy:
        started = time.monotonic()
        code = main(
            paid(
                *t.options,
                "--endpoint-url",
                proxy.url,
                "--no-checkpoint",
                "--max-write-units",
                str(budget),
                "--page-size",
                "25",
            )
        )
        elapsed = time.monotonic() - started
        units = sum(proxy.counts()["write_units"].values())
    assert code == 0, capsys.readouterr()
    assert units == 240  # every delete went through the proxy, one unit each
    assert units <= budget * elapsed * 1.05, (units, elapsed)
    assert (t.staging_left(), t.design_left()) == t.expected()


# ---- interrupted and resumed ---------------------------------------------------------------


def scanned_pages(
    ddb: Any, table: str, segment: int, segments: int, through: dict[str, Any], page_size: int
) -> list[dict[str, Any]]:
    """The items of a segment's pages up to the page that ends at ``through``."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] = {}
    while True:
        page = ddb.scan(
            TableName=table, Segment=segment, TotalSegments=segments, Limit=page_size, **start
        )
        items += page["Items"]
        assert "LastEvaluatedKey" in page, "the saved key is no page's end"
        if page["LastEvaluatedKey"] == through:
            return items
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_backfill_resumes_with_no_page_skipped(
    how: signal.Signals, ddb_local: Any, ddb: Any, assembly: Path, tmp_path: Path, capsys: Any
) -> None:
    t = Tables(ddb, assembly, items=600)
    checkpoint = tmp_path / "cp.json"
    segments, page_size = 3, 10
    options = [
        *t.options,
        "--segments",
        str(segments),
        "--page-size",
        str(page_size),
        "--checkpoint",
        str(checkpoint),
    ]
    signalled: list[int] = []

    def interrupt(index: int, request: dict[str, Any]) -> Fault | None:
        """Once the checkpoint shows 12 pages scanned, signal the command and hold this
        request: until it exited (SIGKILL, never answered) or 1 s (SIGINT: the pages in
        flight finish, their positions are saved)."""
        scanned = json.loads(checkpoint.read_text())["scanned"] if checkpoint.exists() else 0
        if signalled or scanned < 12 * page_size:
            return None
        signalled.append(scanned)
        os.killpg(first.pid, how)
        with contextlib.suppress(subprocess.TimeoutExpired):
            first.wait(timeout=1 if how == signal.SIGINT else 60)
        return None if how == signal.SIGINT else Fault.error("InternalServerError", 500)

    with FaultProxy(ddb_local.endpoint_url, interrupt) as proxy:
        err = (tmp_path / "first.err").open("wb")
        with err:
            first = subprocess.Popen(
                [str(SCRIPT), *paid(*options, "--endpoint-url", proxy.url)],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        code = first.wait(timeout=120)
    assert signalled, "the backfill ended before its checkpoint showed 12 pages"
    assert code == (130 if how == signal.SIGINT else -signal.SIGKILL), (
        tmp_path / "first.err"
    ).read_text()[-2000:]

    saved = json.loads(checkpoint.read_text())
    selected = {i for i in range(t.items) if status(i) == "PAID"}
    claimed: list[dict[str, Any]] = []
    for segment, after in saved["after"].items():
        claimed += scanned_pages(ddb, t.messages, int(segment), segments, after, page_size)
    done = [s for first_, last in saved["done"] for s in range(first_, last + 1)]
    for segment in done:
        claimed += ddb.scan(TableName=t.messages, Segment=segment, TotalSegments=segments)["Items"]
    assert len(claimed) == saved["scanned"] < t.items
    claimed_ids = {int(i["createdAt"]["N"]) for i in claimed}
    left = t.staging_left()
    assert not {f"m{i}" for i in claimed_ids & selected} & left  # every claimed page is done
    assert {f"m{i}" for i in selected - claimed_ids} & left  # and the backfill was not

    code = main(paid(*options, "--endpoint-url", ddb_local.endpoint_url))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "resuming after it" in out
    assert f"resumed after {saved['scanned']} items" in out
    assert f"items scanned: {t.items - saved['scanned']}," in out  # no page twice, none skipped
    assert (t.staging_left(), t.design_left()) == t.expected()


def test_a_page_with_records_not_deleted_holds_its_segments_checkpoint(
    ddb_local: Any, ddb: Any, assembly: Path, tmp_path: Path, capsys: Any
) -> None:
    """A recovery tool keeps what it could not do: the checkpoint stays before the first page
    with a record not deleted (before: that page was saved as done, and a resumed run never
    tried it again)."""
    t = Tables(ddb, assembly, items=60)
    checkpoint = tmp_path / "cp.json"
    broken = {"on": True}

    def poison(index: int, body: dict[str, Any]) -> Fault | None:
        keys = json.dumps(body["RequestItems"])
        return Fault.http(500) if broken["on"] and '"m1"' in keys else None

    options = [*t.options, "--segments", "1", "--page-size", "10", "--checkpoint", str(checkpoint)]
    with FaultProxy(ddb_local.endpoint_url, poison) as proxy:
        first = main(paid(*options, "--endpoint-url", proxy.url))
        out = capsys.readouterr()
        assert first == 1, out
        assert "not deleted: " in out.out and "retries from there" in out.out
        saved = json.loads(checkpoint.read_text())
        assert saved["done"] == [], saved  # the segment is not done: m1's page is ahead
        assert "m1" in t.staging_left()  # with the others of its request (a 500 fails it all)
        broken["on"] = False
        second = main(paid(*options, "--endpoint-url", proxy.url))
    assert second == 0, capsys.readouterr()
    assert (t.staging_left(), t.design_left()) == t.expected()
    assert json.loads(checkpoint.read_text())["done"] == [[0, 0]]
