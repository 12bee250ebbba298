"""DynamoDB stream records and events exactly as Lambda delivers them, for tests and the
benchmark, built without the library (so a test can compare the library with them).

- :func:`record` / :func:`event`: one record from plain values (or typed ones with ``raw``),
  any event, view type and sequence number; :func:`typed` is DynamoDB's typed JSON.
- :func:`make_batch`: the benchmark's batches, the example app's ``KEYS_ONLY`` INSERT
  records. ``examples/app.py`` keys both tables by ``messageId`` (S, a UUID as in the
  article) and ``createdAt`` (N, epoch milliseconds). A batch *with duplicate keys* repeats
  existing keys in 20 % of its records (each a separate INSERT with its own sequence number,
  as when an item is written, deleted and written again inside one batching window), placed
  at random; a batch *without* has one record per key. Everything is derived from a seed, so
  every series gets the same batch.
- :func:`target_key`: the key a batch key names in a target table, from the synthesized
  ``key_mapping`` (the two-target case's design table, ``STAGING#{messageId}`` /
  ``MSG#{createdAt}``): an oracle written apart from the runtime's key mapping.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The tests' source stream.
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/src/stream/2026-01-01T00:00:00.000"
#: The example app's Messages stream (the benchmark's batches).
MESSAGES_STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/Messages/stream/2026-01-01T00:00:00.000"
)
#: Share of the records of a batch "with duplicate keys" that repeat another record's key.
DUPLICATE_SHARE = 0.2
EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z
_FIRST_BATCH_SEQUENCE = 4_421_584_500_000_000_017_450_439_091
_sequence = itertools.count(10**20)


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
    view_type: str = "NEW_AND_OLD_IMAGES",
    event_id: str | None = None,
    size_bytes: int = 64,
    source_arn: str = STREAM_ARN,
) -> dict[str, Any]:
    """One stream record. Values are typed with :func:`typed` unless ``raw`` (then they are
    used as they are, a copy of each mapping). Sequence numbers count up from 10**20 unless
    given; the event ID is ``"e"`` and the sequence number unless given."""

    def conv(values: dict[str, Any]) -> dict[str, Any]:
        return dict(values) if raw else {k: typed(v) for k, v in values.items()}

    stream: dict[str, Any] = {
        "ApproximateCreationDateTime": EPOCH_S,
        "Keys": conv(keys),
        "SequenceNumber": sequence_number or str(next(_sequence)),
        "SizeBytes": size_bytes,
        "StreamViewType": view_type,
    }
    if new is not None:
        stream["NewImage"] = conv(new)
    if old is not None:
        stream["OldImage"] = conv(old)
    return {
        "eventID": event_id or "e" + stream["SequenceNumber"],
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": stream,
        "eventSourceARN": source_arn,
    }


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


class Context:
    """A Lambda context whose remaining time is fixed at ``ms``."""

    def __init__(self, ms: int = 60_000) -> None:
        self.ms = ms

    def get_remaining_time_in_millis(self) -> int:
        return self.ms


# ---- the benchmark's batches --------------------------------------------------------------


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
            "createdAt": {"N": str(EPOCH_S * 1000 + 1000 * i + rng.randrange(1000))},
        }
        for i in range(count)
    ]
    order = list(range(count)) + [rng.randrange(count) for _ in range(records - count)]
    rng.shuffle(order)
    stream_records = [
        record(
            "INSERT",
            keys[k],
            raw=True,
            sequence_number=str(_FIRST_BATCH_SEQUENCE + n),
            view_type="KEYS_ONLY",
            event_id=f"{rng.getrandbits(128):032x}",
            size_bytes=61,
            source_arn=MESSAGES_STREAM_ARN,
        )
        for n, k in enumerate(order)
    ]
    return Batch({"Records": stream_records}, keys)


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
