"""docs/scaling.md against ``benchmarks.cost``: the pasted tables must be what the model
renders from docs/benchmarks.json, and the model's arithmetic must hold on numbers small
enough to check by hand. Fast: no DynamoDB Local, no subprocesses."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import cost  # noqa: E402

DOC = ROOT / "docs" / "scaling.md"
GB = 256 / 1024


def between(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert found, f"docs/scaling.md has no <!-- {name}:start/end --> markers"
    return found.group(1).strip()


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return cost.load(ROOT / "docs" / "benchmarks.json")


def row(approach: str, records: int, dup: bool, **fields: Any) -> dict[str, Any]:
    return {
        "approach": approach,
        "records": records,
        "duplicates": dup,
        "gb_s_per_million": 1.0,  # anything but None: the run did not fail
        **fields,
    }


# Hand-checkable: 1,000 items a day for 30 days = 30,000 records, 100 a batch = 300 calls.
SYNTHETIC: dict[str, Any] = {
    "settings": {"concurrency": 8, "latency_ms": 5.0},
    "latency": {"batch_write_25_median_s": 0.010},
    "rows": [
        # 40.4 ms bills 41 ms; CPU 1 ms / (256/1769) = 6.9 ms < wall, so CPU share = wall.
        row("library", 100, False, wall_s=0.0404, cpu_us_per_record=10.0, distinct_keys=100,
            requests=4),
        # 1 s bills 1,000 ms; CPU 0.256 s / (256/1769) = 1.769 s.
        row("per_record", 100, False, wall_s=1.0, cpu_us_per_record=2560.0, distinct_keys=100,
            requests=100),
        row("library", 100, True, wall_s=0.0404, cpu_us_per_record=10.0, distinct_keys=80,
            requests=4),
        row("per_record", 100, True, wall_s=1.0, cpu_us_per_record=2560.0, distinct_keys=80,
            requests=100),
        row("library", 1000, False, wall_s=0.5, cpu_us_per_record=100.0, distinct_keys=1000,
            requests=40),
        row("per_record", 1000, False, wall_s=10.0, cpu_us_per_record=2000.0,
            distinct_keys=1000, requests=1000),
    ],
}  # fmt: skip


def test_doc_cost_table_is_what_the_model_renders(real: dict[str, Any]) -> None:
    assert between("cost-table") == cost.cost_table(real)


def test_doc_throughput_table_is_what_the_model_renders(real: dict[str, Any]) -> None:
    assert between("throughput-table") == cost.throughput_table(real)


def test_arithmetic_on_a_synthetic_run() -> None:
    lib, per_record, lib_dup, per_record_dup = cost.monthly_costs(
        SYNTHETIC, items_per_day=1000, duplicates=(False, True)
    )
    assert (lib.approach, per_record.approach) == ("library", "per_record")
    assert lib.records == 30_000 and lib.invocations == per_record.invocations == 300

    assert lib.billed_ms == 41 and lib.billed_ms_cpu_share == 41
    assert lib.gb_s == pytest.approx(300 * 0.041 * GB)  # 3.075 GB-s
    assert lib.gb_s_cpu_share == pytest.approx(lib.gb_s)
    assert lib.lambda_duration_usd == pytest.approx(3.075 * 0.0000133334)
    assert lib.lambda_requests_usd == pytest.approx(300 / 1e6 * 0.20)  # $0.00006
    assert lib.write_units == 300 * 100
    assert lib.dynamodb_usd == pytest.approx(30_000 / 1e6 * 0.625)  # $0.01875
    assert lib.total_usd == pytest.approx(3.075 * 0.0000133334 + 0.00006 + 0.01875)

    assert per_record.billed_ms == 1000 and per_record.billed_ms_cpu_share == 1769
    assert per_record.gb_s == pytest.approx(75.0)
    assert per_record.gb_s_cpu_share == pytest.approx(300 * 1.769 * GB)  # 132.675 GB-s
    assert per_record.total_usd_cpu_share == pytest.approx(
        132.675 * 0.0000133334 + 0.00006 + 0.01875
    )
    assert per_record.lambda_requests_usd == lib.lambda_requests_usd

    # Repeated keys: the library deletes 80 distinct keys a batch, per-record all 100.
    assert lib_dup.write_units == 300 * 80 and per_record_dup.write_units == 300 * 100
    assert lib_dup.dynamodb_usd == pytest.approx(24_000 / 1e6 * 0.625)


def test_throughput_model_on_a_synthetic_run() -> None:
    rates = [r.keys_per_s for r in cost.throughput_model(SYNTHETIC)]
    assert rates == pytest.approx(
        [
            8 * 25 / 0.005,  # 40,000: round trip only
            8 * 25 / 0.010,  # 20,000: measured latency
            1e6 / 100,  # 10,000: one vCPU, from the largest library row
            1e6 / 100 * 256 / 1769,  # about 1,447 at 256 MB
            1000 / 0.5,  # 2,000 measured
            1000 / 10.0,  # 100 per-record measured
        ]
    )


def test_per_record_bills_more_gb_s_than_the_library(real: dict[str, Any]) -> None:
    costs = cost.monthly_costs(real)
    for dup in (False, True):
        lib, per_record = (c for c in costs if c.duplicates is dup)
        assert (lib.approach, per_record.approach) == ("library", "per_record")
        assert per_record.gb_s > lib.gb_s
        assert per_record.gb_s_cpu_share > lib.gb_s_cpu_share
        assert per_record.lambda_requests_usd == lib.lambda_requests_usd
        assert per_record.write_units >= lib.write_units


def test_billed_ms_rounds_up_without_float_noise() -> None:
    assert cost.billed_ms(0.046) == 46  # 0.046 * 1000 is 46.00000000000001
    assert cost.billed_ms(0.0451) == 46
    assert cost.billed_ms(0.001) == 1


def test_a_failed_or_missing_run_has_no_cost() -> None:
    failed = {"rows": [row("library", 100, False, wall_s=0.1) | {"gb_s_per_million": None}]}
    with pytest.raises(ValueError, match="failed"):
        cost.measured_row(failed, "library", 100, False)
    with pytest.raises(LookupError, match="measured: \\[100, 1000\\]"):
        cost.measured_row(SYNTHETIC, "library", 250, False)


def test_the_model_uses_the_construct_defaults() -> None:
    tree = ast.parse((ROOT / "src" / "stream_scavenger" / "construct.py").read_text("utf-8"))
    defaults = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert defaults["DEFAULT_BATCH_SIZE"] == cost.BATCH_SIZE
    assert defaults["DEFAULT_MEMORY_SIZE"] == cost.MEMORY_MB


def test_main_prints_the_tables(real: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main([]) == 0
    assert capsys.readouterr().out.strip() == cost.cost_table(real)
    assert cost.main(["--throughput", str(ROOT / "docs" / "benchmarks.json")]) == 0
    assert capsys.readouterr().out.strip() == cost.throughput_table(real)
