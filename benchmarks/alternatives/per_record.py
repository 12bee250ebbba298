"""Per-record deletes: Powertools' ``BatchProcessor`` for DynamoDB streams, one ``DeleteItem``
per record.

This is the record-handler idiom of the Powertools documentation for DynamoDB streams,
with the record handler doing the delete. ``BatchProcessor`` calls the record handler for
one record after the other (``AsyncBatchProcessor`` would need an async handler and an
async DynamoDB client, which boto3 does not have), so requests go out one at a time. The
documentation's ``Logger`` and ``Tracer`` are left out: they would only add work. A failed
delete is reported for that record in the partial-batch response; duplicate keys are simply
deleted twice (``DeleteItem`` is idempotent).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
table = boto3.resource("dynamodb").Table(os.environ["TARGET_TABLE"])


def record_handler(record: DynamoDBRecord) -> None:
    if record.event_name == DynamoDBRecordEventName.INSERT and record.dynamodb is not None:
        table.delete_item(Key=record.dynamodb.keys)


def handler(event: dict[str, Any], context: Any) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
