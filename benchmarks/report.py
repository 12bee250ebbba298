"""The printed table, ``benchmarks.json`` and the log-log plot of a run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.suite import APPROACHES, LABELS, LAMBDA_MB_PER_VCPU, TWO_TARGET_APPROACHES

#: The series of the main table and the left panel of the plot.
MAIN = (*APPROACHES, "limit")
#: The two-target series: their own table and the right panel.
TWO = (*TWO_TARGET_APPROACHES, "limit_two_targets")


def _num(value: float | None, fmt: str, empty: str = "-") -> str:
    return empty if value is None else format(value, fmt)


def _deleted(row: dict[str, Any]) -> str:
    if row["approach"].startswith("limit"):
        return "-"
    if row.get("error"):
        return f"NO ({row['keys_left']} left, {row['error']})"
    return "yes" if row["all_deleted"] else f"NO ({row['keys_left']} left)"


def _requests(row: dict[str, Any]) -> str:
    rejected = row.get("rejected_requests")
    return f"{row['requests']:,}" + (f" ({rejected} rejected)" if rejected else "")


def results_table(results: dict[str, Any]) -> str:
    """The results as a markdown table (also readable as plain text)."""
    head = (
        "| series | records | dup keys | wall ms | requests | all deleted | CPU us/rec "
        "| peak KiB | event KiB | GB-s / M rec | GB-s / M rec, CPU share |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results["rows"]:
        if r["approach"] not in MAIN:
            continue
        peak = r.get("peak_bytes")
        event = r.get("event_bytes")
        lines.append(
            "| "
            + " | ".join(
                [
                    LABELS[r["approach"]],
                    f"{r['records']:,}",
                    "20 %" if r["duplicates"] else "none",
                    f"{r['wall_s'] * 1000:,.1f}",
                    _requests(r),
                    _deleted(r),
                    _num(r.get("cpu_us_per_record"), ".1f"),
                    _num(
                        None if peak is None else peak / 1024,
                        ",.0f",
                        "n/m" if r["approach"] != "limit" else "-",
                    ),
                    _num(None if event is None else event / 1024, ",.0f"),
                    _num(r.get("gb_s_per_million"), ",.1f", "fails"),
                    _num(
                        r.get("gb_s_per_million_cpu_share"),
                        ",.1f",
                        "-" if r["approach"] == "limit" else "fails",
                    ),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def ratios_table(results: dict[str, Any]) -> str:
    lines = [
        "| records | dup keys | per-record / library | library / limit "
        "| library / CPU floor | article / library | per-record requests / library requests |",
        "|" + "---|" * 7,
    ]
    for x in results["ratios"]:
        lines.append(
            f"| {x['records']:,} | {'20 %' if x['duplicates'] else 'none'} "
            f"| {_num(x['per_record_over_library'], '.1f')}x "
            f"| {_num(x['library_over_limit'], '.2f')}x "
            f"| {_num(x.get('library_over_machine_floor'), '.2f')}x "
            f"| {_num(x['article_over_library'], '.2f', 'fails')}"
            f"{'' if x['article_over_library'] is None else 'x'} "
            f"| {_num(x['per_record_requests_over_library'], '.0f')}x |"
        )
    return "\n".join(lines)


def cpu_table(results: dict[str, Any]) -> str:
    """Where the batched approaches' time goes: CPU of each process during the call."""
    lines = [
        "| series | records | dup keys | wall ms | handler CPU ms | own CPU us/rec "
        "| own peak KiB | DynamoDB Local CPU ms | proxy CPU ms | CPU floor ms | limit ms |",
        "|" + "---|" * 11,
    ]
    for r in results["rows"]:
        if r["approach"] not in ("library", "article"):
            continue
        lim = next(
            x
            for x in results["rows"]
            if x["approach"] == "limit"
            and (x["records"], x["duplicates"]) == (r["records"], r["duplicates"])
        )
        cpu_ms = r["cpu_us_per_record"] * r["records"] / 1000
        lines.append(
            f"| {LABELS[r['approach']]} | {r['records']:,} | "
            f"{'20 %' if r['duplicates'] else 'none'} | {r['wall_s'] * 1000:,.1f} | "
            f"{cpu_ms:,.1f} | {_num(r.get('own_cpu_us_per_record'), '.1f')} | "
            f"{_num(_kib(r.get('own_peak_bytes')), ',.0f')} | "
            f"{_num(_ms(r.get('server_cpu_s')), ',.1f')} | "
            f"{_num(_ms(r.get('proxy_cpu_s')), ',.1f')} | "
            f"{_num(_ms(r.get('machine_floor_s')), ',.1f')} | {lim['wall_s'] * 1000:,.1f} |"
        )
    return "\n".join(lines)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _kib(size: float | None) -> float | None:
    return None if size is None else size / 1024


def two_targets_table(results: dict[str, Any]) -> str:
    """The two-target case: one scavenger with both targets, two single-target scavengers
    (summed), and the limit, with the keys deleted in each table."""
    tables = list((results.get("two_targets") or {}).get("tables") or ["staging", "design"])
    lines = [
        "| series | records | dup keys | (table, key) pairs | wall ms | requests "
        + "".join(f"| {t} keys deleted " for t in tables)
        + "| handler CPU ms | CPU floor ms | peak KiB | GB-s / M rec |",
        "|" + "---|" * (10 + len(tables)),
    ]
    for r in results["rows"]:
        if r["approach"] not in TWO:
            continue
        limit = r["approach"].startswith("limit")
        if limit:
            deleted = ["-"] * len(tables)
        else:
            left = r["keys_left_by_table"]
            deleted = [
                f"{r['distinct_keys'] - left[t]:,}/{r['distinct_keys']:,}"
                + ("" if left[t] == 0 else " **NO**")
                for t in tables
            ]
        cpu_ms = None if limit else r["cpu_us_per_record"] * r["records"] / 1000
        name = LABELS[r["approach"]] + (" (sum of 2)" if r.get("functions", 1) > 1 else "")
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    f"{r['records']:,}",
                    "20 %" if r["duplicates"] else "none",
                    f"{r['distinct_pairs']:,}",
                    f"{r['wall_s'] * 1000:,.1f}",
                    _requests(r) + ("" if limit or not r.get("error") else f" ({r['error']})"),
                    *deleted,
                    _num(cpu_ms, ",.1f"),
                    _num(_ms(r.get("machine_floor_s")), ",.1f"),
                    _num(_kib(r.get("peak_bytes")), ",.0f"),
                    _num(r.get("gb_s_per_million"), ",.1f", "-" if limit else "fails"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def two_targets_ratios_table(results: dict[str, Any]) -> str:
    lines = [
        "| records | dup keys | requests: two targets / two single-target / limit "
        "| wall: two targets / two single-target | wall: two targets / limit "
        "| handler CPU: two targets / two single-target |",
        "|" + "---|" * 6,
    ]
    for x in results.get("two_target_ratios", []):
        lines.append(
            f"| {x['records']:,} | {'20 %' if x['duplicates'] else 'none'} "
            f"| {x['requests']:,} / {_num(x['two_single_requests'], ',')} / "
            f"{_num(x['limit_requests'], ',')} "
            f"| {_num(x['two_targets_over_two_single'], '.2f')}x "
            f"| {_num(x['two_targets_over_limit'], '.2f')}x "
            f"| {_num(x['cpu_two_targets_over_two_single'], '.2f')}x |"
        )
    return "\n".join(lines)


def cold_table(results: dict[str, Any]) -> str:
    cold = results.get("cold_import") or {}
    if not cold:
        return "(cold import not measured)"
    base = cold["import boto3"]["median_s"]
    lines = [
        "| fresh process, one import | median ms | quartiles ms | / import boto3 |",
        "|---|---|---|---|",
    ]
    for name, value in cold.items():
        q1, _, q3 = value["quartiles_s"]
        ratio = f"{value['median_s'] / base:.2f}x"
        if "ratio_median" in value:
            r1, _, r3 = value["ratio_quartiles"]
            ratio = f"{value['ratio_median']:.2f}x paired ({r1:.2f}-{r3:.2f})"
        lines.append(
            f"| {name} | {value['median_s'] * 1000:.1f} | {q1 * 1000:.0f}-{q3 * 1000:.0f} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def throttled_table(results: dict[str, Any]) -> str:
    """The throttled-target series: one row per capacity, the goals marked MISS where missed."""
    from benchmarks.throttled import verdicts

    lines = [
        "| write units/s | records | invocations | busy s | consumed / provisioned "
        "| throttled requests | re-delete units | on-failure records (unabsorbable) "
        "| keys left |",
        "|" + "---|" * 9,
    ]
    for p in (results.get("throttled") or {}).get("points", []):
        ok = verdicts(p)

        def mark(name: str, ok: dict[str, bool] = ok) -> str:
            return "" if ok[name] else " **MISS**"

        lines.append(
            f"| {p['units_per_s']:,} | {p['records']:,} | {len(p['invocations'])} "
            f"| {p['busy_s']:.1f} | {p['utilization']:.1%}{mark('utilization')} "
            f"| {p['throttled_requests']}/{p['requests']} ({p['throttled_share']:.1%})"
            f"{mark('throttled_share')} "
            f"| {p['write_units_absent']}/{p['write_units']} ({p['redelete_share']:.1%})"
            f"{mark('redelete_share')} "
            f"| {p['on_failure']:,} ({p['unabsorbable']:,}){mark('on_failure')} "
            f"| {p['keys_left']:,} |"
        )
    return "\n".join(lines)


def targets_lines(results: dict[str, Any]) -> str:
    return "\n".join(
        f"{t['verdict']:4}  {t['target']}: {t['measured']}" for t in results["targets"]
    )


def header(results: dict[str, Any]) -> str:
    m, s, lat = results["machine"], results["settings"], results["latency"]
    return (
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}; load average "
        f"{results['load_average']['start'][0]:.2f} at the start, "
        f"{results['load_average']['end'][0]:.2f} at the end. "
        f"Proxy latency {s['latency_ms']:g} ms per request; measured medians through it: "
        f"{lat['batch_write_25_median_s'] * 1000:.1f} ms per 25-key BatchWriteItem, "
        f"{lat['delete_item_median_s'] * 1000:.1f} ms per DeleteItem. "
        f"Library: {results['target']['concurrency']} requests in flight, chunks of "
        f"{results['target']['chunk']}. GB-seconds per million records at {s['memory_mb']} MB: "
        "billed for the measured wall time; 'CPU share': for max(wall time, handler CPU time "
        f"x {LAMBDA_MB_PER_VCPU}/{s['memory_mb']}), as Lambda gives {s['memory_mb']} MB about "
        f"{s['memory_mb'] / LAMBDA_MB_PER_VCPU:.2f} vCPU. All ratios are from this one run."
    )


def text(results: dict[str, Any]) -> str:
    parts = [
        header(results),
        "",
        results_table(results),
        "",
        "Ratios (wall time unless stated):",
        ratios_table(results),
        "",
        "Where the batched calls' time goes (own: this library's code alone, botocore replaced "
        "by an instant stand-in; CPU floor: handler + DynamoDB Local + proxy CPU during the "
        f"call / {results['machine']['nproc']} cores):",
        cpu_table(results),
        "",
        *(
            [
                "Two targets (staging with the messages' key, and a single-table design keyed "
                "STAGING#{messageId} / MSG#{createdAt}): one scavenger with both targets, two "
                "single-target scavengers (each run once on the same batch; summed), and the "
                "limit ceil(2 x distinct keys / 25):",
                two_targets_table(results),
                "",
                two_targets_ratios_table(results),
                "",
            ]
            if results.get("two_target_ratios")
            else []
        ),
        *(
            [
                f"Throttled target (goals: >= 90 % consumed, <= 10 % throttled requests, "
                f"<= 5 % re-delete units, nothing absorbable on the on-failure queue; "
                f"timeout {results['throttled']['timeout_s']:g} s, "
                f"retry_attempts {results['throttled']['retry_attempts']}):",
                throttled_table(results),
                "",
            ]
            if results.get("throttled")
            else []
        ),
        *(
            [
                "Handler CPU against the no-latency stub, 1,000 records: "
                f"{results['no_latency_stub']['cpu_us_per_record']:.1f} us/record "
                f"(median of {results['no_latency_stub']['repeat']} calls), wall "
                f"{results['no_latency_stub']['wall_s'] * 1000:.1f} ms; the same requests "
                "from botocore alone, one after the other: "
                f"{results['no_latency_stub'].get('sdk_cpu_us_per_record', float('nan')):.1f} "
                "us/record.",
                "",
            ]
            if results.get("no_latency_stub")
            else []
        ),
        "Cold import:",
        cold_table(results),
        "",
        "Targets:",
        targets_lines(results),
    ]
    for note in results.get("notes", []) + [
        f"skipped: {s['approach']} {s['records']} ({s['reason']})" for s in results["skipped"]
    ]:
        parts.append(f"note: {note}")
    return "\n".join(parts)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")


STYLE = {
    "library": ("tab:blue", "o"),
    "per_record": ("tab:orange", "s"),
    "article": ("tab:green", "^"),
    "limit": ("black", "D"),
    "two_targets": ("tab:blue", "o"),
    "two_single": ("tab:purple", "v"),
    "limit_two_targets": ("black", "D"),
}


def _panel(ax: Any, results: dict[str, Any], approaches: tuple[str, ...]) -> None:
    for approach in approaches:
        color, marker = STYLE[approach]
        for duplicates in (False, True):
            points = sorted(
                (r["records"], r["wall_s"], r)
                for r in results["rows"]
                if r["approach"] == approach and r["duplicates"] == duplicates
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            label = LABELS[approach] + (" (20 % duplicate keys)" if duplicates else "")
            if approach == "two_single":
                label = label.replace("scavengers", "scavengers, summed")
            failed = [p for p in points if p[2].get("error") or p[2].get("all_deleted") is False]
            ax.plot(
                xs,
                ys,
                color=color,
                marker=marker,
                linestyle="--" if duplicates else "-",
                markerfacecolor="white" if duplicates else color,
                label=label,
                alpha=0.55 if approach == "article" and duplicates else 1.0,
            )
            if failed:
                ax.scatter(
                    [p[0] for p in failed],
                    [p[1] for p in failed],
                    marker="x",
                    s=90,
                    color="red",
                    zorder=5,
                    label="failed: ValidationException, keys left"
                    if approach == "article"
                    else f"{LABELS[approach]}: keys left",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("records in the invocation")
    ax.set_ylabel("wall time of the invocation (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def plot(results: dict[str, Any], path: Path) -> None:
    """Records against wall time, log-log; dashed: with duplicate keys. Left: the four
    series; right (when measured): the two-target case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    two = any(r["approach"] in TWO for r in results["rows"])
    throttle = (results.get("throttled") or {}).get("points")
    count = 1 + two + bool(throttle)
    fig, axes = plt.subplots(1, count, figsize=(7.5 * count, 5.5), dpi=120, squeeze=False)
    panels = list(axes[0])
    m, s = results["machine"], results["settings"]
    where = f"DynamoDB Local behind a latency proxy; {m['nproc']} CPUs, Python {m['python']}"
    _panel(panels[0], results, ("per_record", "article", "library", "limit"))
    panels[0].set_title(
        f"Deleting the keys of one stream batch: {s['latency_ms']:g} ms per request\n{where}",
        fontsize=10,
    )
    if two:
        _panel(panels[1], results, ("two_single", "two_targets", "limit_two_targets"))
        panels[1].set_title(
            "Two target tables from one stream: one scavenger against two\n"
            f"single-target scavengers (wall times summed); {s['latency_ms']:g} ms per request",
            fontsize=10,
        )
        # The same scale on both panels, so the two can be read against each other.
        low = min(a.get_ylim()[0] for a in panels[:2])
        high = max(a.get_ylim()[1] for a in panels[:2])
        for a in panels[:2]:
            a.set_ylim(low, high)
    if throttle:
        _throttled_panel(panels[-1], results)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _throttled_panel(ax: Any, results: dict[str, Any]) -> None:
    """Per capacity: the four ratios against their goals (dotted)."""
    from benchmarks.throttled import GOALS

    points = results["throttled"]["points"]
    xs = list(range(len(points)))
    width = 0.2
    bars = [
        ("utilization", "consumed / provisioned", "tab:blue"),
        ("throttled_share", "throttled requests / all", "tab:orange"),
        ("redelete_share", "re-delete units / consumed", "tab:red"),
    ]
    for n, (name, label, color) in enumerate(bars):
        values = [100 * (p[name] or 0) for p in points]
        ax.bar([x + (n - 1) * width for x in xs], values, width, color=color, label=label)
        for x in xs:
            ax.hlines(
                100 * GOALS[name],
                x + (n - 1.5) * width,
                x + (n - 0.5) * width,
                colors="black",
                linestyles="dotted",
            )
    ax.set_xticks(
        xs,
        [
            f"{p['units_per_s']} WCU/s\n{p['records']:,} records, {len(p['invocations'])} inv.\n"
            f"on-failure: {p['on_failure']}"
            for p in points
        ],
    )
    ax.set_ylabel("% (dotted: goal)")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8, loc="center right")
    ax.grid(True, axis="y", alpha=0.3)
    t = results["throttled"]
    ax.set_title(
        f"Throttled target: a burst of {t['burst_capacity_s']} s of capacity, replayed as Lambda\n"
        f"does (timeout {t['timeout_s']:g} s, retry_attempts {t['retry_attempts']}); "
        f"{t['latency_ms']:g} ms per request",
        fontsize=10,
    )
