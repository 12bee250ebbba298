"""Tables on DynamoDB Local for the tests: fill them, read their keys, count the deletes."""

from __future__ import annotations

import threading
from typing import Any

from testkit.events import typed


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
        result: dict[str, Any] = self.client.batch_write_item(**kwargs)
        return result


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
