"""The handler's report: metric lines built from the metric table, and the summary line.

No DynamoDB: a client that confirms every delete stands in for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from operator import attrgetter
from typing import Any

import pytest

from stream_scavenger.runtime.scavenger.config import (
    METRICS,
    TARGET_METRICS,
    ScavengerConfig,
    TargetConfig,
)
from stream_scavenger.runtime.scavenger.deleter import DeleteStats
from stream_scavenger.runtime.scavenger.handler import (
    SUMMARY_METRICS,
    TARGET_SUMMARY_METRICS,
    Scavenger,
    Summary,
    TargetSummary,
)
from stream_scavenger.runtime.scavenger.metrics import emf_document
from testkit.events import event, record


class ConfirmsAll:
    """Answers every BatchWriteItem with nothing unprocessed and one unit per key."""

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        items = kwargs["RequestItems"]
        capacity = [{"TableName": t, "CapacityUnits": float(len(r))} for t, r in items.items()]
        return {"UnprocessedItems": {}, "ConsumedCapacity": capacity}


def test_every_metric_of_the_table_carries_a_summary_field_and_nothing_else() -> None:
    assert set(SUMMARY_METRICS) == set(METRICS)
    assert set(TARGET_SUMMARY_METRICS) == set(TARGET_METRICS)
    for path in SUMMARY_METRICS.values():
        assert isinstance(attrgetter(path)(Summary()), int | float), path
    for path in TARGET_SUMMARY_METRICS.values():
        assert isinstance(attrgetter(path)(TargetSummary("t")), int | float), path


def test_a_name_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="not metrics of the contract: \\['Nope'\\]"):
        emf_document({"Nope": 1}, "fn", 0)
    with pytest.raises(ValueError, match="not per-target metrics of the contract"):
        emf_document({"RecordsReceived": 1}, "fn", 0, target_table="t")


def emitted(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def summary_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if '"scavenged"' in line]


def test_the_metric_lines_carry_the_summary_with_the_tables_units(
    capsys: pytest.CaptureFixture[str],
) -> None:
    targets = (
        TargetConfig("one", {"pk": "pk"}, frozenset({"INSERT"})),
        TargetConfig("two", {"pk": "pk"}, frozenset({"INSERT", "REMOVE"})),
    )
    scavenger = Scavenger(ScavengerConfig(targets), ConfirmsAll())
    records = [record("INSERT", {"pk": f"k{i % 30}"}) for i in range(40)]
    records += [record("REMOVE", {"pk": "gone"}), record("MODIFY", {"pk": "k1"})]
    capsys.readouterr()

    assert scavenger.handle(event(*records)) == {"batchItemFailures": []}

    summary = scavenger.last_summary
    *per_target, total = emitted(capsys.readouterr().out)
    assert {name: total[name] for name in METRICS} == {
        name: attrgetter(path)(summary) for name, path in SUMMARY_METRICS.items()
    }
    assert (total["RecordsReceived"], total["RecordsSkipped"], total["KeysDeleted"]) == (42, 1, 61)
    assert total["BatchWriteRequests"] == summary.deletes.requests == 3  # 61 keys, 25 a request
    assert total["ConsumedWriteCapacity"] == 61.0
    (directive,) = total["_aws"]["CloudWatchMetrics"]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == METRICS
    assert directive["Dimensions"] == [["FunctionName"]]
    for line, counts in zip(per_target, summary.targets, strict=True):
        assert line["TargetTable"] == counts.table
        assert {name: line[name] for name in TARGET_METRICS} == {
            name: getattr(counts, path) for name, path in TARGET_SUMMARY_METRICS.items()
        }
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
            name: METRICS[name] for name in TARGET_METRICS
        }
        assert directive["Dimensions"] == [["FunctionName", "TargetTable"]]
    assert [(t.matched, t.deleted) for t in summary.targets] == [(40, 30), (41, 31)]


def test_the_summary_line_nests_the_delete_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    config = ScavengerConfig.single(target_table="t", key_mapping={"pk": "pk"})
    scavenger = Scavenger(config, ConfirmsAll())
    capsys.readouterr()

    scavenger.handle(event(*(record("INSERT", {"pk": f"k{i}"}) for i in range(3))))

    (line,) = summary_lines(capsys.readouterr().err)
    assert line["level"] == "INFO"
    assert line["summary"] == json.loads(json.dumps(asdict(scavenger.last_summary)))
    assert set(line["summary"]["deletes"]) == set(asdict(DeleteStats()))
    assert "error_codes" not in line, "once, inside summary.deletes"


def test_an_event_without_records_emits_zeros_and_logs_no_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = ScavengerConfig.single(target_table="t", key_mapping={"pk": "pk"})
    capsys.readouterr()

    assert Scavenger(config, ConfirmsAll()).handle({"not": "records"}) == {"batchItemFailures": []}

    out = capsys.readouterr()
    (total,) = emitted(out.out)
    assert all(total[name] == 0 for name in METRICS)
    assert summary_lines(out.err) == []
