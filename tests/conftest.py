"""Shared fixtures: one DynamoDB Local for the whole session, tables made per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from stream_scavenger.local.dynamodb_local import DynamoDBLocal

# Property tests: a bounded run in the test command, a long one with --slow.
settings.register_profile("ci", max_examples=30, derandomize=False, print_blob=True)
settings.register_profile("slow", max_examples=500, print_blob=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="long property-based runs (500 examples)")


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("slow" if config.getoption("--slow") else "ci")


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[DynamoDBLocal]:
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
