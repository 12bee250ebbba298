"""SQS for the tests: moto's server on loopback, one per test module that asks for it.

DynamoDB Local has no SQS; moto's is used for SQS only (never as proof of DynamoDB
behaviour). A module uses the fixture by importing it::

    from sqsserver import sqs_endpoint_fixture  # noqa: F401 - the sqs_endpoint fixture

and asking for ``sqs_endpoint`` (the server's URL).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="module", name="sqs_endpoint")
def sqs_endpoint_fixture() -> Iterator[str]:
    """The URL of a moto SQS server on 127.0.0.1, for the module's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
