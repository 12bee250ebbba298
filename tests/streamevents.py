"""Builders for DynamoDB stream events exactly as Lambda delivers them."""

from __future__ import annotations

import base64
import itertools
import threading
from typing import Any

_sequence = itertools.count(10**20)
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/src/stream/2026-01-01T00:00:00.000"


def typed(value: Any) -> dict[str, Any]:
    """A Python value in DynamoDB's typed JSON, as in a Lambda event (B is base64)."""
    if isinstance(value, bytes):
        return {"B": base64.b64encode(value).decode()}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": value}


def record(
    event_name: str,
    keys: dict[str, Any],
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    *,
    raw: bool = False,
    sequence_number: str | None = None,
) -> dict[str, Any]:
    """One stream record. Values are typed with :func:`typed` unless ``raw``."""
    conv = (lambda d: d) if raw else (lambda d: {k: typed(v) for k, v in d.items()})
    stream: dict[str, Any] = {
        "ApproximateCreationDateTime": 1767225600,
        "Keys": conv(keys),
        "SequenceNumber": sequence_number or str(next(_sequence)),
        "SizeBytes": 64,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        stream["NewImage"] = conv(new)
    if old is not None:
        stream["OldImage"] = conv(old)
    return {
        "eventID": "e" + stream["SequenceNumber"],
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": stream,
        "eventSourceARN": STREAM_ARN,
    }


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


class Context:
    """A Lambda context whose remaining time is fixed or counts down from ``ms``."""

    def __init__(self, ms: int = 60_000) -> None:
        self.ms = ms

    def get_remaining_time_in_millis(self) -> int:
        return self.ms


class CountingClient:
    """Passes batch_write_item through, recording the number of items of each call."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        items = sum(len(v) for v in kwargs["RequestItems"].values())
        with self._lock:
            self.calls.append(items)
        return self.client.batch_write_item(**kwargs)


def put_items(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    """Write items (plain Python values) in chunks of 25, with the client's own typing."""
    for start in range(0, len(items), 25):
        chunk = items[start : start + 25]
        request = [
            {"PutRequest": {"Item": {k: _client_typed(v) for k, v in item.items()}}}
            for item in chunk
        ]
        response = ddb.batch_write_item(RequestItems={table: request})
        assert not response.get("UnprocessedItems"), "DynamoDB Local never leaves items unprocessed"


def _client_typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        return {"B": value}
    return typed(value)


def scan_keys(ddb: Any, table: str, attrs: list[str]) -> set[tuple[Any, ...]]:
    """All keys of a table, as tuples of raw values (N as Decimal-comparable strings)."""
    found = set()
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            found.add(tuple(next(iter(item[a].values())) for a in attrs))
    return found
