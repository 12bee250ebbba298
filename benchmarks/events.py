"""Stream batches for the benchmark: the example app's KEYS_ONLY INSERT records.

``examples/app.py`` keys both tables by ``messageId`` (S, a UUID as in the article) and
``createdAt`` (N, epoch milliseconds); the construct gives the Messages stream
``KEYS_ONLY``. A batch *with duplicate keys* repeats existing keys in 20 % of its records
(each a separate INSERT with its own sequence number, as when an item is written, deleted
and written again inside one batching window), placed at random; a batch *without* has one
record per key. Everything is derived from a seed, so every series gets the same batch.
``target_key`` names a batch key in another target table (the two-target case's design table,
``STAGING#{messageId}`` / ``MSG#{createdAt}``), from the synthesized ``key_mapping``.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Mapping
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


def target_key(key: Mapping[str, Mapping[str, str]], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The key a batch key names in a target table, from the target's synthesized
    ``key_mapping`` (target attribute -> source attribute, or a template such as
    ``"STAGING#{messageId}"``).

    Written here independently of the runtime, so the tables are filled with the items the
    scavenger must delete and what is left in them afterwards checks the library. Templates
    take strings and plain integers only (numbers as DynamoDB stores them), which is all the
    batches hold; anything else is refused rather than guessed.
    """
    out: dict[str, Any] = {}
    for attribute, source in mapping.items():
        if "{" not in source and "}" not in source:
            out[attribute] = dict(key[source])
            continue
        if _PLACEHOLDER.sub("", source).count("{") or _PLACEHOLDER.sub("", source).count("}"):
            raise ValueError(f"key template {source!r}: only {{attribute}} placeholders")
        out[attribute] = {"S": _PLACEHOLDER.sub(lambda m: _text(key, m.group(1)), source)}
    return out


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _text(key: Mapping[str, Mapping[str, str]], attribute: str) -> str:
    ((type_, raw),) = key[attribute].items()
    if type_ == "S":
        return raw
    if type_ == "N" and raw.isdigit() and (raw == "0" or not raw.startswith("0")):
        return raw
    raise ValueError(f"{attribute}: {type_} {raw!r} is not rendered by the benchmark")


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
