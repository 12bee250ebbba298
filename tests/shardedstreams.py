"""A thin wrapper around DynamoDB Local's streams client, presenting what DynamoDB Local never
does: several shards over several ``DescribeStream`` pages, parent/child lineage, closed
shards, and empty ``GetRecords`` pages before later records.

Each presented shard is the one real shard of a DynamoDB Local stream (a table per shard):
records, sequence numbers and iterators are DynamoDB Local's own. A closed shard ends (no
``NextShardIterator``) where its real shard has no more records; an open one goes on as
DynamoDB Local's does. ``gaps`` serve empty pages before a record, once each: where an
iterator starts a page at that record, it first gets that many empty pages (the next
iterator to get there reads straight through, as a fresh read would).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Shard:
    """One presented shard: ``stream_arn`` is the real stream holding its records."""

    shard_id: str
    stream_arn: str
    parent: str | None = None
    closed: bool = False
    #: Index of a record in the shard -> empty pages served before a page that starts there.
    gaps: dict[int, int] = field(default_factory=dict)


class ShardedStreams:
    """Stands in for a ``dynamodbstreams`` client: one stream made of ``shards``."""

    def __init__(
        self,
        client: Any,
        stream_arn: str,
        shards: list[Shard],
        *,
        shards_per_page: int = 100,
        records_per_page: int = 1000,
    ) -> None:
        self.client = client
        self.stream_arn = stream_arn
        self.shards = shards
        self.shards_per_page = shards_per_page
        self.records_per_page = records_per_page
        self.describe_calls = 0
        #: Called with the number of each DescribeStream call, before it is answered.
        self.on_describe: Callable[[int], None] = lambda call: None
        self.empty_pages_served = 0
        self._real_shard = {s.shard_id: self._only_shard(s.stream_arn) for s in shards}
        #: (presented shard, first sequence number of a page) -> empty pages still to serve
        self._gaps: dict[tuple[str, str], int] = {}
        for shard in shards:
            sequence_numbers = self.sequence_numbers(shard)
            for index, count in shard.gaps.items():
                self._gaps[(shard.shard_id, sequence_numbers[index])] = count
        self._iterators: dict[str, tuple[Shard, str, dict[str, Any] | None]] = {}
        self._tokens = itertools.count()

    def add(self, shard: Shard) -> None:
        """A new shard (say, the child of one that closed) from now on."""
        self._real_shard[shard.shard_id] = self._only_shard(shard.stream_arn)
        self.shards.append(shard)

    @classmethod
    def as_it_is(cls, client: Any, stream_arn: str, **options: Any) -> ShardedStreams:
        """The real stream (its one shard, open, same IDs), with ``gaps`` and page sizes."""
        (real,) = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        shard = Shard(real["ShardId"], stream_arn, gaps=options.pop("gaps", {}))
        return cls(client, stream_arn, [shard], **options)

    def _only_shard(self, stream_arn: str) -> str:
        (shard,) = self.client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        return str(shard["ShardId"])

    def sequence_numbers(self, shard: Shard) -> list[str]:
        iterator = self.client.get_shard_iterator(
            StreamArn=shard.stream_arn,
            ShardId=self._real_shard[shard.shard_id],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        numbers: list[str] = []
        while iterator:
            page = self.client.get_records(ShardIterator=iterator)
            if not page["Records"]:
                return numbers
            numbers += [r["dynamodb"]["SequenceNumber"] for r in page["Records"]]
            iterator = page.get("NextShardIterator")
        return numbers

    def describe_stream(
        self, StreamArn: str, ExclusiveStartShardId: str | None = None, Limit: int = 100
    ) -> dict[str, Any]:
        assert StreamArn == self.stream_arn
        self.describe_calls += 1
        self.on_describe(self.describe_calls)
        ids = [s.shard_id for s in self.shards]
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        size = min(Limit, self.shards_per_page)
        page = self.shards[start : start + size]
        description: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "StreamStatus": "ENABLED",
            "Shards": [self._describe(s) for s in page],
        }
        if start + size < len(self.shards):
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    @staticmethod
    def _describe(shard: Shard) -> dict[str, Any]:
        numbers: dict[str, str] = {"StartingSequenceNumber": "0"}
        if shard.closed:
            numbers["EndingSequenceNumber"] = "9" * 21
        described: dict[str, Any] = {"ShardId": shard.shard_id, "SequenceNumberRange": numbers}
        if shard.parent:
            described["ParentShardId"] = shard.parent
        return described

    def get_shard_iterator(self, StreamArn: str, ShardId: str, **position: Any) -> dict[str, Any]:
        assert StreamArn == self.stream_arn
        (shard,) = [s for s in self.shards if s.shard_id == ShardId]
        real = self.client.get_shard_iterator(
            StreamArn=shard.stream_arn, ShardId=self._real_shard[ShardId], **position
        )["ShardIterator"]
        return {"ShardIterator": self._token(shard, real, None)}

    def _token(self, shard: Shard, real: str, fetched: dict[str, Any] | None) -> str:
        token = f"presented-{next(self._tokens)}"
        self._iterators[token] = (shard, real, fetched)
        return token

    def get_records(self, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:
        shard, real, fetched = self._iterators.pop(ShardIterator)
        page = fetched or self.client.get_records(
            ShardIterator=real, Limit=min(Limit, self.records_per_page)
        )
        records = page["Records"]
        if records:
            gap = (shard.shard_id, records[0]["dynamodb"]["SequenceNumber"])
            if self._gaps.get(gap, 0) > 0:
                self._gaps[gap] -= 1
                self.empty_pages_served += 1
                return {"Records": [], "NextShardIterator": self._token(shard, real, page)}
        answer: dict[str, Any] = {"Records": records}
        following = page.get("NextShardIterator")
        if following and not (shard.closed and not records):
            answer["NextShardIterator"] = self._token(shard, following, None)
        return answer
