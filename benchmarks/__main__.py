"""``python -m benchmarks``: run every series, print the table, write JSON and the plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.suite import Settings, run


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="This library against per-record deletes, the article's approach and the "
        "limit, and with two targets against two single-target scavengers, on DynamoDB Local "
        "behind a loopback latency proxy, in one run.",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=5.0,
        help="round-trip latency the proxy adds to every request (default 5)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=None,
        help="records per batch, comma-separated (default 100,1000,10000; --quick: 100,1000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller run: sizes 100,1000, 3 repetitions, 5 import rounds",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed calls per measurement (median reported; default 5, quick 3)",
    )
    parser.add_argument(
        "--per-record-max",
        type=int,
        default=None,
        help="do not run per-record deletes above this many records",
    )
    parser.add_argument(
        "--per-record-memory-max",
        type=int,
        default=None,
        help="per-record memory runs (one more full pass each) only up to this many records "
        "(default 1000)",
    )
    parser.add_argument("--no-cold-import", action="store_true", help="skip the import timing")
    parser.add_argument(
        "--no-two-targets",
        action="store_true",
        help="skip the two-target series (one scavenger with two targets against two "
        "single-target scavengers)",
    )
    parser.add_argument(
        "--no-throttled",
        action="store_true",
        help="skip the throttled-target series (3 capacities, about 2.5 min)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs"),
        help="where benchmarks.json and benchmarks.png go (default docs/)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings(latency_ms=args.latency_ms)
    if args.quick:
        settings.sizes, settings.repeat, settings.import_rounds = (100, 1000), 3, 5
        settings.probe_samples = 15
    if args.sizes:
        settings.sizes = args.sizes
    if args.repeat:
        settings.repeat = args.repeat
    settings.per_record_max = args.per_record_max
    if args.per_record_memory_max is not None:
        settings.per_record_memory_max = args.per_record_memory_max
    settings.cold_import = not args.no_cold_import
    settings.two_targets = not args.no_two_targets
    settings.throttled = not args.no_throttled

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    results = run(settings, progress)
    print(report.text(results))
    report.write_json(results, args.out / "benchmarks.json")
    report.plot(results, args.out / "benchmarks.png")
    print(
        f"\nwrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.png'} "
        f"({results['elapsed_s']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
