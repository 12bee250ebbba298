"""Shared fixtures (one DynamoDB Local for the whole session, tables made per test) and the
test tiers.

Every test is in exactly one tier, a marker assigned here at collection:

- ``fast``: construct tests (synthesis through jsii, so Node) and the runtime tests that
  need no DynamoDB Local. No Java, no network; ``./run.sh test-fast``.
- ``ddb``: needs DynamoDB Local (Java). Any test that uses one of :data:`DDB_FIXTURES`,
  directly or through another fixture, is in it without being marked; the end-to-end tests
  of a synthesized app beside them are marked.
- ``slow``: integ-runner, wheel builds, cfn-lint, the benchmark subset, the demo command.
  Marked explicitly (``pytest.mark.slow``).

An explicit tier marker wins (at most one per test, on the function, its class or its
module); ``fast`` on a test that uses DynamoDB Local is an error. Hypothesis tests also get
``property`` (not a tier): ``./run.sh test -m property --slow`` is the long property run.

In a run that selects fast tests only (``-m fast``), DynamoDB Local cannot start: its
fixture fails, and ``java`` on ``PATH`` is a stub that exits with an error, so a test that
reaches Java some other way fails too. A fast test that takes more than
:data:`FAST_TEST_BUDGET_S` is named at the end of the run.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from stream_scavenger.local.dynamodb_local import DynamoDBLocal

# Property tests: a bounded run in the test command, a long one with --slow.
settings.register_profile("ci", max_examples=30, derandomize=False, print_blob=True)
settings.register_profile("slow", max_examples=500, print_blob=True)

TIERS = ("fast", "ddb", "slow")
DDB_FIXTURES = frozenset({"ddb_local", "ddb", "ddb_streams", "make_table"})
#: Seconds (set-up, call and tear-down) past which a fast test is named at the end of the run.
FAST_TEST_BUDGET_S = 5.0
_fast_seconds: dict[str, float] = {}
_JAVA_BLOCKED = pytest.StashKey[bool]()
_JAVA_STUB = """#!/bin/sh
echo "java: not in the fast tier (tests/conftest.py): a test that needs Java is 'ddb' or 'slow'" >&2
exit 127
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="long property-based runs (500 examples)")


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("slow" if config.getoption("--slow") else "ci")


def _explicit_tier(item: pytest.Item) -> str | None:
    """The tier marker on the item, its class or its module (at most one)."""
    found = {m.name for m in item.iter_markers() if m.name in TIERS}
    if len(found) > 1:
        raise pytest.UsageError(f"{item.nodeid}: tier markers {sorted(found)}: choose one")
    return found.pop() if found else None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses_ddb = bool(DDB_FIXTURES & set(getattr(item, "fixturenames", ())))
        explicit = _explicit_tier(item)
        if explicit == "fast" and uses_ddb:
            raise pytest.UsageError(f"{item.nodeid} is marked fast but uses DynamoDB Local")
        if explicit is None or item.get_closest_marker(explicit) is None:
            item.add_marker(explicit or ("ddb" if uses_ddb else "fast"))
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker("property")


def pytest_collection_finish(session: pytest.Session) -> None:
    """A run of fast tests only gets no Java: the fixture fails and ``java`` is a stub."""
    items = session.items
    blocked = bool(items) and all(item.get_closest_marker("fast") for item in items)
    session.config.stash[_JAVA_BLOCKED] = blocked
    if blocked:
        stub = Path(tempfile.mkdtemp(prefix="no-java-"))
        atexit.register(shutil.rmtree, stub, ignore_errors=True)
        (stub / "java").write_text(_JAVA_STUB)
        (stub / "java").chmod(stat.S_IRWXU)
        os.environ["PATH"] = f"{stub}{os.pathsep}{os.environ.get('PATH', '')}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "fast" in report.keywords:
        _fast_seconds[report.nodeid] = _fast_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the fast tests that take long: the tier must stay under a minute."""
    over = {k: v for k, v in _fast_seconds.items() if v > FAST_TEST_BUDGET_S}
    if over:
        terminalreporter.section("fast tests over their budget")
        for nodeid, seconds in sorted(over.items(), key=lambda kv: -kv[1]):
            terminalreporter.line(
                f"{seconds:5.1f}s {nodeid}: over {FAST_TEST_BUDGET_S:g} s, mark it ddb or slow"
            )


@pytest.fixture(scope="session")
def ddb_local(request: pytest.FixtureRequest) -> Iterator[DynamoDBLocal]:
    if request.config.stash.get(_JAVA_BLOCKED, False):
        pytest.fail(
            "DynamoDB Local was asked for in a fast-tier run: the test that uses it must be "
            "in the ddb tier (use a DynamoDB Local fixture as a parameter, or mark it ddb)",
            pytrace=False,
        )
    with DynamoDBLocal() as local:
        yield local


@pytest.fixture(scope="session")
def ddb(ddb_local: DynamoDBLocal) -> Any:
    return ddb_local.client("dynamodb")


@pytest.fixture(scope="session")
def ddb_streams(ddb_local: DynamoDBLocal) -> Any:
    return ddb_local.client("dynamodbstreams")


_names = itertools.count()


@pytest.fixture
def make_table(ddb: Any) -> Any:
    """make_table(keys={"pk": "S", "sk": "N"}, stream=None) -> table name (partition key first)."""

    def make(keys: dict[str, str], stream: str | None = None) -> str:
        name = f"t{next(_names):05d}"
        names = list(keys)
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": [{"AttributeName": names[0], "KeyType": "HASH"}]
            + ([{"AttributeName": names[1], "KeyType": "RANGE"}] if len(names) > 1 else []),
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": t} for n, t in keys.items()
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
        ddb.create_table(**request)
        return name

    return make
