"""The shared helpers themselves: independent of the library, records shaped as Lambda
delivers them, and the loopback proxy in front of a stub upstream (no DynamoDB Local)."""

from __future__ import annotations

import ast
import http.client
import json
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from stream_scavenger.local.dynamodb_local import local_client
from testkit.events import make_batch, record
from testkit.proxy import (
    Fault,
    FaultProxy,
    LatencyProxy,
    LoopbackProxy,
    WriteCapacity,
    delete_cost,
    item_size,
    read_counts,
)
from testkit.tables import scan_keys

TESTKIT = Path(__file__).resolve().parent.parent / "testkit"
ANSWER = b'{"UnprocessedItems":{}}'


def test_testkit_imports_nothing_of_the_library() -> None:
    """What testkit builds is what tests compare the library with: it must not use it."""
    for path in TESTKIT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] == "stream_scavenger"], path.name


def test_a_record_is_shaped_as_lambda_delivers_it() -> None:
    got = record("REMOVE", {"pk": "a", "n": 2}, old={"b": b"\x00", "f": True}, sequence_number="7")
    assert got == {
        "eventID": "e7",
        "eventName": "REMOVE",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1767225600,
            "Keys": {"pk": {"S": "a"}, "n": {"N": "2"}},
            "SequenceNumber": "7",
            "SizeBytes": 64,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "OldImage": {"b": {"B": "AA=="}, "f": {"BOOL": True}},
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/src/stream/"
        "2026-01-01T00:00:00.000",
    }


def test_a_benchmark_batch_is_keys_only_inserts_of_the_example_app() -> None:
    (only,) = make_batch(1, False, seed=3).event["Records"]
    assert only["eventName"] == "INSERT" and len(only["eventID"]) == 32
    assert only["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    assert set(only["dynamodb"]["Keys"]) == {"messageId", "createdAt"}
    assert "table/Messages/stream" in only["eventSourceARN"]


class Upstream(BaseHTTPRequestHandler):
    """Answers every POST with ``ANSWER``, its checksum and a request ID, as DynamoDB does."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-RequestId", "REQ1")
        self.send_header("x-amz-crc32", str(zlib.crc32(ANSWER)))
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(url: str, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        connection.request(
            "POST",
            "/",
            body=json.dumps(body).encode(),
            headers={"X-Amz-Target": f"DynamoDB_20120810.{operation}"},
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def one_delete(table: str = "t", pk: str = "k") -> dict[str, Any]:
    return {"RequestItems": {table: [{"DeleteRequest": {"Key": {"pk": {"S": pk}}}}]}}


def test_what_is_not_faulted_passes_through_with_its_headers(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        status, headers, body = post(proxy.url, "BatchWriteItem", one_delete())
        post(proxy.url, "ListTables", {})
        counts = read_counts(proxy.url)
    assert (status, body) == (200, ANSWER)
    assert headers["x-amzn-requestid"] == "REQ1"
    assert headers["x-amz-crc32"] == str(zlib.crc32(ANSWER))
    assert counts["operations"] == {"BatchWriteItem": 1, "ListTables": 1}
    assert counts["statuses"] == {"BatchWriteItem:200": 1, "ListTables:200": 1}
    assert proxy.counts.batch_items == [1] and proxy.counts() == counts


@pytest.mark.parametrize(
    ("fault", "crc"),
    [
        (Fault.bad_crc(), lambda body: str(zlib.crc32(body) ^ 1)),
        (Fault.bad_crc(after=True), lambda body: str(zlib.crc32(body) ^ 1)),
        (Fault.no_crc(), lambda body: None),
        (Fault.malformed(b"{}"), lambda body: str(zlib.crc32(body))),
    ],
    ids=["bad-crc", "bad-crc-after", "no-crc", "malformed"],
)
def test_answer_faults_set_the_checksum_they_name(upstream: str, fault: Fault, crc: Any) -> None:
    with FaultProxy(upstream, lambda index, body: fault) as proxy:
        status, headers, body = post(proxy.url, "BatchWriteItem", one_delete())
    assert status == 200 and headers.get("x-amz-crc32") == crc(body)
    assert proxy.counts.faults == {f"answer:{fault.code}": 1}


def test_an_error_is_counted_and_a_rejected_single_key_remembered(upstream: str) -> None:
    with FaultProxy(upstream, lambda index, body: Fault.error("ValidationException")) as proxy:
        status, headers, body = post(proxy.url, "BatchWriteItem", one_delete("t", "bad"))
    assert status == 400 and headers["x-amz-crc32"] == str(zlib.crc32(body))
    assert json.loads(body)["__type"] == "com.amazon.coral.validate#ValidationException"
    assert proxy.counts.errors == {"BatchWriteItem:ValidationException": 1}
    assert proxy.counts.rejected_alone == {("t", '{"pk": {"S": "bad"}}')}


def test_unprocessed_items_are_held_back_and_the_rest_forwarded(upstream: str) -> None:
    request = {"RequestItems": {"t": one_delete()["RequestItems"]["t"] * 2}}
    with FaultProxy(upstream, lambda index, body: Fault.unprocessed(pick=lambda i: [1])) as proxy:
        status, headers, body = post(proxy.url, "BatchWriteItem", request)
    assert status == 200 and headers["x-amz-crc32"] == str(zlib.crc32(body))
    assert json.loads(body)["UnprocessedItems"] == {"t": [request["RequestItems"]["t"][1]]}


def test_a_dropped_connection_gets_no_answer(upstream: str) -> None:
    with (
        FaultProxy(upstream, lambda index, body: Fault.drop()) as proxy,
        pytest.raises((http.client.HTTPException, OSError)),
    ):
        post(proxy.url, "BatchWriteItem", one_delete())


def test_latency_is_one_round_trip_and_the_budget_is_kept(upstream: str) -> None:
    with LatencyProxy(upstream, latency_ms=200, max_requests=1) as proxy:
        started = time.monotonic()
        assert post(proxy.url, "ListTables", {})[0] == 200
        assert time.monotonic() - started >= 0.2
        assert post(proxy.url, "ListTables", {})[0] == 503
    assert proxy.counts.operations == {"ListTables": 1}


def test_only_a_loopback_upstream_is_forwarded_to() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoopbackProxy("http://192.0.2.1:8000")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_item_size_and_delete_cost_follow_dynamodbs_rules() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 5
    assert item_size({"n": {"N": "-123.45"}}) == 1 + 4  # 5 digits: 3 bytes, +1
    assert item_size({"m": {"M": {"a": {"BOOL": True}}}, "l": {"L": [{"NULL": True}]}}) == 1 + (
        3 + 1 + 1 + 1
    ) + 1 + (3 + 1 + 1)
    assert delete_cost(None) == 1  # an item already gone still costs a write unit
    assert delete_cost({"pk": {"S": "x" * 1022}}) == 1  # 2 + 1022 bytes: 1 KB
    assert delete_cost({"pk": {"S": "x" * 1023}}) == 2  # one per started KB


def test_a_token_bucket_refills_at_its_rate_and_banks_at_most_its_burst() -> None:
    clock = _Clock()
    bucket = WriteCapacity(10, burst_s=300, clock=clock)
    assert bucket.take([1]) == [False]  # nothing banked at the start
    clock.now = 1.0
    assert bucket.take([4, 4, 4]) == [True, True, False]
    clock.now = 10_000.0
    assert sum(bucket.take([1] * 4000)) == 3000  # at most 300 s of 10 units banked
    with pytest.raises(ValueError):
        WriteCapacity(0)


@pytest.mark.ddb
def test_under_capacity_batch_write_item_answers_as_dynamodb_does(
    ddb_local: Any, make_table: Any
) -> None:
    table = make_table({"pk": "S"})
    client = ddb_local.client("dynamodb")
    small = [{"pk": {"S": f"k{i}"}} for i in range(20)]
    for item in [*small, {"pk": {"S": "big"}, "body": {"S": "x" * 3000}}]:
        client.put_item(TableName=table, Item=item)
    clock = _Clock()
    capacity = {table: WriteCapacity(10, clock=clock)}
    with LoopbackProxy(ddb_local.endpoint_url, capacity=capacity) as proxy:
        once = Config(retries={"total_max_attempts": 1})
        through = local_client("dynamodb", proxy.url, config=once)

        def delete(keys: list[dict[str, Any]]) -> dict[str, Any]:
            request = [{"DeleteRequest": {"Key": k}} for k in keys]
            answer: dict[str, Any] = through.batch_write_item(RequestItems={table: request})
            return answer

        # Nothing fits: the whole request is refused, nothing deleted.
        with pytest.raises(through.exceptions.ProvisionedThroughputExceededException):
            delete(small[:5])
        clock.now = 1.0  # 10 units: the big item (3 KB: 3 units) and 7 small ones fit
        keys = [{"pk": {"S": "big"}}, *small[:10]]
        left = delete(keys)["UnprocessedItems"][table]
        assert [u["DeleteRequest"]["Key"] for u in left] == small[7:10]
        remaining = scan_keys(client, table, ["pk"])
        assert remaining == {(f"k{i}",) for i in range(7, 20)}
        clock.now = 2.0  # re-deleting gone items still costs one unit each
        assert delete(small[:10])["UnprocessedItems"] == {}
        counts = proxy.counts()
    assert counts["write_units"] == {table: 20}
    assert counts["write_units_absent"] == {table: 7}
    assert counts["throttled_deletes"] == {table: 5 + 3}
    assert counts["throttled_requests"] == {table: 2}
    assert counts["errors"] == {"BatchWriteItem:ProvisionedThroughputExceededException": 1}
    assert counts["operations"] == {"BatchWriteItem": 3}  # the model's own lookups not counted
