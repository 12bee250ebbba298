"""The ``stream-scavenger`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .local.check import CheckReport, check_assembly
from .local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError

EXIT_CODES = """exit status: 0 every scavenger deleted exactly the matching items; 1 it did not;
2 usage or set-up error (no Java or DynamoDB Local, not a cloud assembly, no scavenger in it)"""


def _print_reports(reports: list[CheckReport]) -> None:
    header = (
        "stack/function", "records", "deleted", "unrelated kept", "invocations",
        "seconds", "records/s", "result",
    )  # fmt: skip
    rows = [
        (
            f"{r.stack}/{r.function}",
            str(r.records),
            str(r.deleted),
            f"{r.unrelated_kept}/{r.unrelated_total}",
            str(r.run.invocations),
            f"{r.seconds:.2f}",
            f"{r.records / r.seconds:.0f}" if r.seconds else "-",
            "OK" if r.ok else "FAILED",
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def _check(args: argparse.Namespace) -> int:
    if args.endpoint_url:
        local = DynamoDBLocal.__new__(DynamoDBLocal)  # only its client factory, for this endpoint
        local.endpoint_url = args.endpoint_url
        clients = (local.client("dynamodb"), local.client("dynamodbstreams"))
        reports = check_assembly(args.cdk_out, args.endpoint_url, clients, args.records)
    else:
        with DynamoDBLocal() as local:
            clients = (local.client("dynamodb"), local.client("dynamodbstreams"))
            reports = check_assembly(args.cdk_out, local.endpoint_url, clients, args.records)
    _print_reports(reports)
    return 0 if all(r.ok for r in reports) else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (also rendered into API.md)."""
    parser = argparse.ArgumentParser(
        prog="stream-scavenger",
        description="Run a synthesized stream-scavenger on this machine, against DynamoDB Local.",
        epilog=EXIT_CODES,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="run every scavenger of a synthesized cdk.out against DynamoDB Local and verify it",
        description="For each scavenger in CDK_OUT: create its stack's tables in DynamoDB Local, "
        "fill the target, write matching source items, run the function's own asset on the "
        "stream, and verify that exactly the matching target items are gone.",
        epilog="examples:\n  cdk synth && stream-scavenger check cdk.out\n"
        "  stream-scavenger check cdk.out --records 5000 --endpoint-url http://127.0.0.1:8000\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("cdk_out", help="the synthesized cloud assembly directory")
    check.add_argument(
        "--records", type=int, default=200, help="matching records to write (default 200)"
    )
    check.add_argument(
        "--endpoint-url", help="use this DynamoDB endpoint instead of starting DynamoDB Local"
    )
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-scavenger`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (DynamoDBLocalError, ValueError) as err:
        print(f"stream-scavenger: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
