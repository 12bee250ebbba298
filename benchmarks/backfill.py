"""Backfill throughput on DynamoDB Local: ``python -m benchmarks.backfill``.

A source of ``--items`` items (100,000) and a target holding a copy of each; for each
segment count (1, 4, 16) the target is filled again and the backfill deletes every copy,
under a write budget (``--max-write-units``). Prints items/s and the share of the budget the
deletes used (the units DynamoDB Local reports, over budget x seconds), and writes them as
JSON with ``--json FILE``. Standalone: not one of ``python -m benchmarks``' series.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.config import Config

from stream_scavenger.backfill import backfill
from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS, DynamoDBLocal
from stream_scavenger.runtime.scavenger.backfill import SourceTable
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.filtering import MappingFilters
from stream_scavenger.runtime.scavenger.handler import make_client

KEYS = {"messageId": "S", "createdAt": "N"}


def create(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "messageId", "KeyType": "HASH"},
            {"AttributeName": "createdAt", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, t in KEYS.items()],
        BillingMode="PAY_PER_REQUEST",
    )


def fill(ddb: Any, table: str, items: int, body: bool) -> None:
    """``items`` items m0.. in 25-item requests, 8 at a time."""

    def chunk(start: int) -> None:
        requests = []
        for i in range(start, min(items, start + 25)):
            item = {"messageId": {"S": f"m{i:09d}"}, "createdAt": {"N": str(1_767_225_600 + i)}}
            if body:
                item["body"] = {"S": "x" * 200}
            requests.append({"PutRequest": {"Item": item}})
        ddb.batch_write_item(RequestItems={table: requests})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(chunk, range(0, items, 25)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backfill", description=__doc__)
    parser.add_argument("--items", type=int, default=100_000, help="source items (100,000)")
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-write-units", type=float, default=100_000.0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    results = []
    with DynamoDBLocal() as local:
        ddb = local.client("dynamodb")
        create(ddb, "source")
        fill(ddb, "source", args.items, body=True)
        config = ScavengerConfig.single("target", {k: k for k in KEYS}, key_types=KEYS)
        source = SourceTable("source", tuple(KEYS), "NEW_IMAGE")
        settings: dict[str, Any] = {"endpoint_url": local.endpoint_url, **LOCAL_CLIENT_SETTINGS}
        settings["config"] = Config(proxies={})  # a loopback endpoint: never through a proxy
        for segments in args.segments:
            create(ddb, "target")
            fill(ddb, "target", args.items, body=False)
            report = backfill(
                ddb, config, lambda: make_client(config, **settings), MappingFilters(), source,
                segments=segments, max_write_units=args.max_write_units,
            )  # fmt: skip
            left = ddb.scan(TableName="target", Select="COUNT")["Count"]
            t = report.totals
            share = t.write_units / (args.max_write_units * report.seconds)
            results.append(
                {
                    "items": t.items, "segments": segments, "seconds": round(report.seconds, 2),
                    "items_per_s": round(t.items / report.seconds), "deleted": t.deleted,
                    "left": left, "read_units": t.read_units, "write_units": t.write_units,
                    "max_write_units": args.max_write_units, "budget_share": round(share, 3),
                }
            )  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
            ddb.delete_table(TableName="target")
            time.sleep(0.5)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0 if all(r["left"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
