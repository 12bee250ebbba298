"""A small, fast run of the benchmark suite (``python -m benchmarks``), so it does not rot.

100 records per batch, 1 ms of proxy latency, two timed calls per series (the second of the
same batch with new event IDs: the container must not acknowledge it from memory), one
round of the cold-import timing, the no-latency stub once, no throttled-target series.
Asserts correctness only (request counts, every key deleted, the article's approach failing
on duplicate keys, the two-target case deleting every key in both tables with
ceil(2 x distinct keys / 25) requests, the outputs written), never time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import coldstart, report, suite, throttled  # noqa: E402
from benchmarks.worker import direct_client  # noqa: E402
from testkit.events import DUPLICATE_SHARE, distinct_keys, make_batch, target_key  # noqa: E402
from testkit.proxy import LatencyProxy, read_counts  # noqa: E402

RECORDS = 100


@pytest.fixture(scope="module")
def results(ddb_local: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = suite.Settings(
        latency_ms=1.0,
        sizes=(RECORDS,),
        repeat=2,  # a second call of the same batch must not be acknowledged from memory
        import_rounds=1,
        probe_samples=5,
        warmup_rounds=0,
        throttled=False,  # about 2.5 min; its derivation is tested below
        stub_repeat=1,
    )
    target, two = suite.synthesize_all(tmp_path_factory.mktemp("bench"))
    server_pid = ddb_local.pid
    with LatencyProxy(ddb_local.endpoint_url, settings.latency_ms, max_seconds=600) as proxy:
        return suite.measure(
            settings, target, ddb_local.endpoint_url, proxy.url, lambda _: None, server_pid, two=two
        )


def row(results: dict[str, Any], approach: str, duplicates: bool) -> dict[str, Any]:
    found = suite.find(results["rows"], approach, RECORDS, duplicates)
    assert found is not None, (approach, duplicates)
    return found


def run_of(results: dict[str, Any], approach: str, duplicates: bool) -> dict[str, Any]:
    (found,) = [
        r
        for r in results["runs"]
        if (r["approach"], r["records"], r["duplicates"]) == (approach, RECORDS, duplicates)
    ]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("duplicates", [False, True])
def test_library_sends_exactly_the_limit_and_deletes_every_key(
    results: dict[str, Any], duplicates: bool
) -> None:
    lib = row(results, "library", duplicates)
    limit = row(results, "limit", duplicates)
    assert lib["distinct_keys"] == distinct_keys(RECORDS, duplicates)
    assert lib["requests"] == limit["requests"] == math.ceil(lib["distinct_keys"] / 25)
    assert lib["all_deleted"] and lib["keys_left"] == 0 and lib["error"] is None
    for rep in run_of(results, "library", duplicates)["reps"]:
        assert rep["proxy"]["operations"] == {"BatchWriteItem": limit["requests"]}
        assert rep["proxy"]["errors"] == {}
        assert rep["reported"] == 0
    assert lib["peak_bytes"] > 0 and lib["own_peak_bytes"] > 0
    assert lib["own_cpu_us_per_record"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("duplicates", [False, True])
def test_per_record_deletes_every_key_one_request_per_record(
    results: dict[str, Any], duplicates: bool
) -> None:
    per = row(results, "per_record", duplicates)
    assert per["all_deleted"] and per["error"] is None
    for rep in run_of(results, "per_record", duplicates)["reps"]:
        assert rep["proxy"]["operations"] == {"DeleteItem": RECORDS}
        assert rep["reported"] == 0


@pytest.mark.slow
def test_article_deletes_every_key_without_duplicates(results: dict[str, Any]) -> None:
    art = row(results, "article", False)
    assert art["all_deleted"] and art["error"] is None
    assert art["requests"] == math.ceil(RECORDS / 25)


@pytest.mark.slow
def test_article_fails_on_duplicate_keys_and_it_is_shown(results: dict[str, Any]) -> None:
    art = row(results, "article", True)
    assert art["error"] == "ClientError"
    assert "ValidationException" in art["error_message"]
    assert not art["all_deleted"] and art["keys_left"] > 0
    assert art["gb_s_per_million"] is None  # no cost is shown for a run that failed
    rep = run_of(results, "article", True)["reps"][0]
    # No de-duplication: one request per 25 records, duplicates included.
    assert rep["proxy"]["operations"] == {"BatchWriteItem": math.ceil(RECORDS / 25)}
    assert rep["proxy"]["errors"]["BatchWriteItem:ValidationException"] >= 1
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    assert verdicts["the article's approach shown failing on duplicate keys"] == "PASS"


BOTH_EMPTY = {"staging": 0, "design": 0}


@pytest.mark.slow
@pytest.mark.parametrize("duplicates", [False, True])
def test_two_targets_send_the_limit_and_delete_every_key_in_both_tables(
    results: dict[str, Any], duplicates: bool
) -> None:
    both = row(results, "two_targets", duplicates)
    limit = row(results, "limit_two_targets", duplicates)
    distinct = distinct_keys(RECORDS, duplicates)
    assert (both["distinct_keys"], both["distinct_pairs"]) == (distinct, 2 * distinct)
    assert both["requests"] == limit["requests"] == math.ceil(2 * distinct / 25)
    assert both["all_deleted"] and both["error"] is None and both["functions"] == 1
    assert both["keys_left_by_table"] == BOTH_EMPTY
    run = run_of(results, "two_targets", duplicates)
    # The tables held every key (the design table its STAGING#/MSG# form) before each call.
    assert run["keys_filled_by_table"] == {"staging": distinct, "design": distinct}
    for rep in run["reps"]:
        assert rep["proxy"]["operations"] == {"BatchWriteItem": limit["requests"]}
        assert rep["proxy"]["errors"] == {}
        assert rep["reported"] == 0 and rep["keys_left_by_table"] == BOTH_EMPTY
    assert both["peak_bytes"] > 0 and both["own_cpu_us_per_record"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("duplicates", [False, True])
def test_two_single_target_scavengers_each_delete_their_table_and_are_summed(
    results: dict[str, Any], duplicates: bool
) -> None:
    single = row(results, "two_single", duplicates)
    distinct = distinct_keys(RECORDS, duplicates)
    run = run_of(results, "two_single", duplicates)
    staging, design = run["parts"]
    assert (staging["tables"], design["tables"]) == (["staging"], ["design"])
    for part in (staging, design):
        for rep in part["reps"]:
            assert rep["proxy"]["operations"] == {"BatchWriteItem": math.ceil(distinct / 25)}
            assert rep["keys_left"] == 0 and rep["reported"] == 0 and rep["error"] is None
        assert part["keys_filled_by_table"] == {part["tables"][0]: distinct}
    assert single["requests"] == 2 * math.ceil(distinct / 25)
    assert single["wall_s"] == pytest.approx(staging["wall_s"] + design["wall_s"])
    assert single["cpu_us_per_record"] * RECORDS / 1e6 == pytest.approx(
        staging["cpu_s"] + design["cpu_s"]
    )
    assert single["all_deleted"] and single["keys_left_by_table"] == BOTH_EMPTY
    assert single["functions"] == 2
    (ratio,) = [
        x
        for x in results["two_target_ratios"]
        if (x["records"], x["duplicates"]) == (RECORDS, duplicates)
    ]
    assert ratio["two_single_requests"] == single["requests"]
    assert ratio["requests"] == ratio["limit_requests"] == math.ceil(2 * distinct / 25)
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    two = [v for t, v in verdicts.items() if t.startswith("two targets:")]
    assert two == ["PASS", "PASS"]


def test_target_keys_follow_the_synthesized_mapping() -> None:
    key = {"messageId": {"S": "m-1"}, "createdAt": {"N": "1767225600"}}
    design = {"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"}
    assert target_key(key, design) == {"pk": {"S": "STAGING#m-1"}, "sk": {"S": "MSG#1767225600"}}
    same = {"messageId": "messageId", "createdAt": "createdAt"}
    assert target_key(key, same) == key
    with pytest.raises(ValueError):  # not a number as DynamoDB stores it: refused, not guessed
        target_key({"createdAt": {"N": "1.50"}}, {"sk": "MSG#{createdAt}"})


@pytest.mark.slow
def test_targets_are_reported_not_asserted(results: dict[str, Any]) -> None:
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    exact = "requests = ceil(distinct keys / 25) exactly, without faults (library)"
    assert verdicts[exact] == "PASS"
    assert set(verdicts.values()) <= {"PASS", "MISS", "n/a"}
    cold = results["cold_import"]
    assert cold["import boto3"]["median_s"] > 0
    assert len(cold) == 8 and all(v["median_s"] > 0 for v in cold.values())
    assert cold[coldstart.PAIRED]["ratio_median"] > 0


@pytest.mark.slow
def test_outputs_are_written(results: dict[str, Any], tmp_path: Path) -> None:
    text = report.text(results)
    assert "| this library | 100 |" in text and "Targets:" in text
    assert "| this library, two targets | 100 |" in text
    report.write_json(results, tmp_path / "benchmarks.json")
    report.plot(results, tmp_path / "benchmarks.png")
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "benchmarks.json").stat().st_size > 0


def test_batches_are_reproducible_with_the_stated_duplicate_share() -> None:
    plain, dup = make_batch(1000, False, seed=1), make_batch(1000, True, seed=1)
    assert (plain.records, plain.distinct) == (1000, 1000)
    assert (dup.records, dup.distinct) == (1000, 1000 - round(1000 * DUPLICATE_SHARE))
    assert make_batch(1000, True, seed=1).payload() == dup.payload()
    sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in dup.event["Records"]]
    assert sequence == sorted(sequence)
    keys = {str(r["dynamodb"]["Keys"]) for r in dup.event["Records"]}
    assert len(keys) == dup.distinct


def test_limit_is_waves_of_the_single_request_latency() -> None:
    assert suite.limit_requests(1000) == 40
    assert suite.limit_wall(1000, 0.01, 8) == pytest.approx(5 * 0.01)
    assert suite.limit_wall(800, 0.01, 8) == pytest.approx(4 * 0.01)
    assert suite.gb_seconds_per_million(1.0, 1000, 256) == pytest.approx(250.0)


def test_proxy_counts_and_refuses_anything_but_loopback(ddb_local: Any) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LatencyProxy("http://192.0.2.1:8000")
    with LatencyProxy(ddb_local.endpoint_url, latency_ms=0, max_requests=1) as proxy:
        client = direct_client(proxy.url)
        client.list_tables(Limit=1)
        with pytest.raises(Exception):  # noqa: B017 - the request budget is exhausted
            client.list_tables(Limit=1)
        counts = read_counts(proxy.url)
    assert counts["operations"] == {"ListTables": 1}
    assert counts["statuses"] == {"ListTables:200": 1}


@pytest.mark.slow
def test_the_no_latency_stub_measures_the_handler_with_every_request_confirmed(
    results: dict[str, Any],
) -> None:
    stubbed = results["no_latency_stub"]
    assert stubbed["records"] == 1000 and stubbed["cpu_us_per_record"] > 0
    assert stubbed["one_in_flight_cpu_us_per_record"] > 0 and stubbed["sdk_cpu_us_per_record"] > 0
    # Warm-ups: 200 records for each handler (8 requests each), the SDK's 40 requests once;
    # then per call 40 requests from each handler and 40 from the SDK alone: none remembered.
    assert stubbed["stub_requests"] == 2 * 8 + 40 + 3 * 40 * stubbed["repeat"]
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    assert verdicts["handler CPU <= 45 us/record, 1,000 records, no-latency stub"] in {
        "PASS",
        "MISS",
    }


def _point(on_failure: int, absent: int) -> dict[str, Any]:
    replays = {
        "invocations": [{"records": 900, "reported": 500, "wall_s": 14.0}] * 3,
        "on_failure": on_failure,
        "accrued_s": 40.0,
    }
    counts = {
        "write_units": {"t": 900},
        "write_units_absent": {"t": absent},
        "operations": {"BatchWriteItem": 50},
        "throttled_requests": {"t": 4},
        "throttled_deletes": {"t": 60},
    }
    return throttled.derive(25, 900, 2, replays, counts, 0)


def test_throttled_ratios_and_goals_are_derived_from_the_proxy_counts() -> None:
    point = _point(on_failure=0, absent=9)
    assert point["utilization"] == pytest.approx(900 / (25 * 40.0))
    assert point["throttled_share"] == pytest.approx(4 / 50)
    assert point["redelete_share"] == pytest.approx(9 / 900)
    assert point["unabsorbable"] == 0  # 3 invocations of 14.2 s at 25 units/s take 1,065
    verdicts = {t["target"]: t["verdict"] for t in throttled.targets([point])}
    assert set(verdicts.values()) == {"PASS"}  # 90 % consumed meets the goal
    missed = throttled.targets([_point(on_failure=25, absent=90)])
    assert [t["verdict"] for t in missed] == ["PASS", "PASS", "MISS", "MISS"]
    text = report.throttled_table({"throttled": {"points": [_point(25, 90)]}})
    assert "| 25 | 900 | 3 |" in text and text.count("**MISS**") == 2
