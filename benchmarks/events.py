"""Stream batches for the benchmark: the example app's KEYS_ONLY INSERT records.

``examples/app.py`` keys both tables by ``messageId`` (S, a UUID as in the article) and
``createdAt`` (N, epoch milliseconds); the construct gives the Messages stream
``KEYS_ONLY``. A batch *with duplicate keys* repeats existing keys in 20 % of its records
(each a separate INSERT with its own sequence number, as when an item is written, deleted
and written again inside one batching window), placed at random; a batch *without* has one
record per key. Everything is derived from a seed, so every series gets the same batch.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

#: Share of the records of a batch "with duplicate keys" that repeat another record's key.
DUPLICATE_SHARE = 0.2
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Messages/stream/2026-01-01T00:00:00.000"
_FIRST_SEQUENCE = 4_421_584_500_000_000_017_450_439_091
_EPOCH_MS = 1_767_225_600_000


@dataclass(frozen=True)
class Batch:
    """One invocation's event and the distinct target keys it names."""

    event: dict[str, Any]
    keys: list[dict[str, dict[str, str]]]

    @property
    def records(self) -> int:
        return len(self.event["Records"])

    @property
    def distinct(self) -> int:
        return len(self.keys)

    def payload(self) -> bytes:
        """The event as the JSON Lambda hands the runtime (compact)."""
        return json.dumps(self.event, separators=(",", ":")).encode()


def distinct_keys(records: int, duplicates: bool) -> int:
    """How many distinct keys a batch of ``records`` records has."""
    return records - round(records * DUPLICATE_SHARE) if duplicates else records


def make_batch(records: int, duplicates: bool, *, seed: int = 0, tag: str = "") -> Batch:
    """``records`` INSERT records; with ``duplicates``, 20 % of them repeat another's key."""
    rng = random.Random(f"{seed}:{records}:{duplicates}:{tag}")
    count = distinct_keys(records, duplicates)
    keys = [
        {
            "messageId": {"S": str(uuid.UUID(int=rng.getrandbits(128), version=4))},
            "createdAt": {"N": str(_EPOCH_MS + 1000 * i + rng.randrange(1000))},
        }
        for i in range(count)
    ]
    order = list(range(count)) + [rng.randrange(count) for _ in range(records - count)]
    rng.shuffle(order)
    stream_records = [_record(keys[k], _FIRST_SEQUENCE + n, rng) for n, k in enumerate(order)]
    return Batch({"Records": stream_records}, keys)


def _record(key: dict[str, dict[str, str]], sequence: int, rng: random.Random) -> dict[str, Any]:
    return {
        "eventID": f"{rng.getrandbits(128):032x}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": _EPOCH_MS // 1000,
            "Keys": {name: dict(value) for name, value in key.items()},
            "SequenceNumber": str(sequence),
            "SizeBytes": 61,
            "StreamViewType": "KEYS_ONLY",
        },
        "eventSourceARN": STREAM_ARN,
    }
