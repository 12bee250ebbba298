"""Scale and cost on paper, from the measured rows of one benchmark run.

``monthly_costs`` prices scavenging 1,000,000 items a day for 30 days with this library and
with per-record deletes (Powertools), from the rows of ``docs/benchmarks.json`` measured at
the construct's default batch size. ``throughput_model`` derives per-invocation rates from
the same run. ``python -m benchmarks.cost [path] [--throughput]`` prints the markdown tables
that ``docs/scaling.md`` shows between its markers (a test keeps them equal).

Which measured size: the rows of 100 records, because Lambda hands the function at most
``batch_size`` records (default 100) per invocation, so one 100-record call is one
invocation, fixed per-call costs included. Larger rows would understate the cost per record.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.suite import CHUNK, LABELS, LAMBDA_MB_PER_VCPU, MB_PER_GB, ROOT

DEFAULT_JSON = ROOT / "docs" / "benchmarks.json"

# Prices: us-east-1, read on PRICES_AS_OF. Free tiers are not deducted.
PRICES_AS_OF = "2026-11-22"
PRICE_REGION = "us-east-1"
#: AWS Lambda duration, Arm (arm64), first 7.5 billion GB-s a month.
#: https://aws.amazon.com/lambda/pricing/
LAMBDA_ARM_USD_PER_GB_S = 0.0000133334
#: AWS Lambda requests (either architecture). Same page.
LAMBDA_USD_PER_MILLION_REQUESTS = 0.20
#: DynamoDB on-demand write request units, Standard table class (since the 2024-11-01 cut).
#: https://aws.amazon.com/dynamodb/pricing/on-demand/
DYNAMODB_USD_PER_MILLION_WRU = 0.625
#: One delete of an item up to 1 KB, or of an absent item, consumes one write request unit.
WRU_PER_DELETE = 1
#: GetRecords calls a Lambda event source mapping makes on a DynamoDB stream are not charged
#: (https://aws.amazon.com/dynamodb/pricing/on-demand/, "DynamoDB Streams").
STREAM_READS_USD = 0.0
#: Lambda rounds each invocation's duration up to a whole millisecond.
BILLED_MS_STEP = 1

# The workload and the construct's defaults (src/stream_scavenger/construct.py).
ITEMS_PER_DAY = 1_000_000
DAYS_PER_MONTH = 30
BATCH_SIZE = 100
MEMORY_MB = 256
#: The series priced: the library and what users would otherwise write.
SERIES = ("library", "per_record")


@dataclass(frozen=True)
class MonthlyCost:
    """One series' month: what Lambda bills, and what the deletes cost in DynamoDB."""

    approach: str
    duplicates: bool
    records: int
    invocations: int
    #: Measured wall time of one invocation, rounded up as Lambda bills it.
    billed_ms: int
    gb_s: float
    lambda_duration_usd: float
    lambda_requests_usd: float
    write_units: int
    dynamodb_usd: float
    #: The same, billing the handler's CPU time stretched to 256 MB's CPU share if longer.
    billed_ms_cpu_share: int
    gb_s_cpu_share: float

    @property
    def total_usd(self) -> float:
        return self.lambda_duration_usd + self.lambda_requests_usd + self.dynamodb_usd

    @property
    def total_usd_cpu_share(self) -> float:
        duration = self.gb_s_cpu_share * LAMBDA_ARM_USD_PER_GB_S
        return duration + self.lambda_requests_usd + self.dynamodb_usd


def load(path: Path = DEFAULT_JSON) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def measured_row(
    results: dict[str, Any], approach: str, records: int, duplicates: bool
) -> dict[str, Any]:
    """The row of one series; a failed run has no cost, so it is refused."""
    for row in results["rows"]:
        if (row["approach"], row["records"], row["duplicates"]) == (approach, records, duplicates):
            if row.get("gb_s_per_million") is None:
                raise ValueError(f"{approach}, {records} records: the run failed, no cost")
            return dict(row)
    sizes = sorted({r["records"] for r in results["rows"] if r["approach"] == approach})
    raise LookupError(f"no {approach} row with {records} records (measured: {sizes})")


def billed_ms(seconds: float) -> int:
    """Lambda's billed duration of one invocation (rounded to µs first: no float noise)."""
    return math.ceil(round(seconds * 1000, 3) / BILLED_MS_STEP) * BILLED_MS_STEP


def deletes_per_call(row: dict[str, Any]) -> int:
    """Deletes one measured call made: per-record deletes repeat a repeated key (one
    ``DeleteItem`` per record); the batched series delete each distinct key once."""
    return int(row["requests"]) if row["approach"] == "per_record" else int(row["distinct_keys"])


def monthly_cost(
    row: dict[str, Any],
    *,
    items_per_day: int = ITEMS_PER_DAY,
    days: int = DAYS_PER_MONTH,
    memory_mb: int = MEMORY_MB,
) -> MonthlyCost:
    """Prices a month of full batches of ``row["records"]`` records, one invocation each."""
    batch = int(row["records"])
    records = items_per_day * days
    invocations = math.ceil(records / batch)
    gb = memory_mb / MB_PER_GB
    wall_ms = billed_ms(float(row["wall_s"]))
    cpu_s = float(row["cpu_us_per_record"]) * batch / 1e6
    share = min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)
    cpu_ms = billed_ms(max(float(row["wall_s"]), cpu_s / share))
    gb_s = invocations * wall_ms / 1000 * gb
    write_units = invocations * deletes_per_call(row) * WRU_PER_DELETE
    return MonthlyCost(
        approach=str(row["approach"]),
        duplicates=bool(row["duplicates"]),
        records=records,
        invocations=invocations,
        billed_ms=wall_ms,
        gb_s=gb_s,
        lambda_duration_usd=gb_s * LAMBDA_ARM_USD_PER_GB_S,
        lambda_requests_usd=invocations / 1e6 * LAMBDA_USD_PER_MILLION_REQUESTS,
        write_units=write_units,
        dynamodb_usd=write_units / 1e6 * DYNAMODB_USD_PER_MILLION_WRU + STREAM_READS_USD,
        billed_ms_cpu_share=cpu_ms,
        gb_s_cpu_share=invocations * cpu_ms / 1000 * gb,
    )


def monthly_costs(
    results: dict[str, Any],
    *,
    batch_size: int = BATCH_SIZE,
    duplicates: Sequence[bool] = (False, True),
    series: Sequence[str] = SERIES,
    items_per_day: int = ITEMS_PER_DAY,
    days: int = DAYS_PER_MONTH,
    memory_mb: int = MEMORY_MB,
) -> list[MonthlyCost]:
    """One ``MonthlyCost`` per series and duplicates setting, from the rows of
    ``batch_size`` records."""
    return [
        monthly_cost(
            measured_row(results, approach, batch_size, dup),
            items_per_day=items_per_day,
            days=days,
            memory_mb=memory_mb,
        )
        for dup in duplicates
        for approach in series
    ]


def _usd(value: float) -> str:
    return f"${value:,.3f}"


def render_costs(costs: Sequence[MonthlyCost], memory_mb: int = MEMORY_MB) -> str:
    """The costs as a markdown table, with the assumptions under it."""
    lines = [
        "| series | dup keys | billed ms / invocation | GB-s / month | Lambda duration "
        "| Lambda requests | deletes (WRU) / month | DynamoDB writes | total / month "
        "| GB-s / month, CPU share | total / month, CPU share |",
        "|" + "---|" * 11,
    ]
    for c in costs:
        cells = [
            LABELS[c.approach],
            "20 %" if c.duplicates else "none",
            f"{c.billed_ms:,}",
            f"{c.gb_s:,.0f}",
            _usd(c.lambda_duration_usd),
            _usd(c.lambda_requests_usd),
            f"{c.write_units:,}",
            _usd(c.dynamodb_usd),
            _usd(c.total_usd),
            f"{c.gb_s_cpu_share:,.0f}",
            _usd(c.total_usd_cpu_share),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    first = costs[0]
    batch = first.records // first.invocations
    lines += [
        "",
        f"{first.records:,} records a month ({first.records // DAYS_PER_MONTH:,} a day, "
        f"{DAYS_PER_MONTH} days), {batch} per invocation: {first.invocations:,} invocations "
        f"for every series. {memory_mb} MB, arm64. Prices {PRICE_REGION}, "
        f"{PRICES_AS_OF}: ${LAMBDA_ARM_USD_PER_GB_S:.10f} per GB-s, "
        f"${LAMBDA_USD_PER_MILLION_REQUESTS:.2f} per million requests, "
        f"${DYNAMODB_USD_PER_MILLION_WRU} per million on-demand WRU; stream reads by Lambda "
        "free; free tiers not deducted.",
    ]
    return "\n".join(lines)


def cost_table(results: dict[str, Any], *, batch_size: int = BATCH_SIZE) -> str:
    """The table ``docs/scaling.md`` shows between ``<!-- cost-table:start/end -->``."""
    return render_costs(monthly_costs(results, batch_size=batch_size))


@dataclass(frozen=True)
class Rate:
    """One bound on the keys one invocation deletes per second, and where it comes from."""

    bound: str
    keys_per_s: float
    source: str


def _largest_row(results: dict[str, Any], approach: str) -> dict[str, Any]:
    size = max(r["records"] for r in results["rows"] if r["approach"] == approach)
    return measured_row(results, approach, size, False)


def throughput_model(results: dict[str, Any], memory_mb: int = MEMORY_MB) -> list[Rate]:
    """Per-invocation rates derived from the run: what the 8 requests in flight allow at the
    measured latency, what the handler's CPU allows, and what the run actually did."""
    in_flight = int(results["settings"]["concurrency"])
    latency_s = float(results["latency"]["batch_write_25_median_s"])
    proxy_s = float(results["settings"]["latency_ms"]) / 1000
    lib = _largest_row(results, "library")
    per_record = _largest_row(results, "per_record")
    cpu_rate = 1e6 / float(lib["cpu_us_per_record"])
    share = min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)
    n, pr = f"{lib['records']:,}", f"{per_record['records']:,}"
    return [
        Rate(
            f"{in_flight} requests in flight × {CHUNK} keys, proxy round trip only",
            in_flight * CHUNK / proxy_s,
            "`settings.concurrency`, `settings.latency_ms`",
        ),
        Rate(
            f"{in_flight} requests in flight × {CHUNK} keys, measured 25-key BatchWriteItem "
            f"({latency_s * 1000:.1f} ms)",
            in_flight * CHUNK / latency_s,
            "`settings.concurrency`, `latency.batch_write_25_median_s`",
        ),
        Rate(
            f"handler CPU, one vCPU ({float(lib['cpu_us_per_record']):.1f} µs/record)",
            cpu_rate,
            f"`rows[library, {n}].cpu_us_per_record`",
        ),
        Rate(
            f"handler CPU at {memory_mb} MB ({share:.3f} vCPU)",
            cpu_rate * share,
            f"the same × {memory_mb} / {LAMBDA_MB_PER_VCPU}",
        ),
        Rate(
            f"this library, measured ({n} records, 2 shared cores incl. DynamoDB Local)",
            int(lib["records"]) / float(lib["wall_s"]),
            f"`rows[library, {n}].wall_s`",
        ),
        Rate(
            f"per-record (Powertools), measured ({pr} records)",
            int(per_record["records"]) / float(per_record["wall_s"]),
            f"`rows[per_record, {pr}].wall_s`",
        ),
    ]


def throughput_table(results: dict[str, Any], memory_mb: int = MEMORY_MB) -> str:
    """The table ``docs/scaling.md`` shows between ``<!-- throughput-table:start/end -->``."""
    lines = ["| bound, one invocation | keys / s | from docs/benchmarks.json |", "|---|---|---|"]
    for r in throughput_model(results, memory_mb):
        lines.append(f"| {r.bound} | {r.keys_per_s:,.0f} | {r.source} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cost",
        description="Monthly cost of scavenging 1,000,000 items a day, from a benchmark run.",
    )
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--throughput", action="store_true", help="print the per-invocation throughput model"
    )
    args = parser.parse_args(argv)
    results = load(args.path)
    print(throughput_table(results) if args.throughput else cost_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
