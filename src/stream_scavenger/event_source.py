"""The event source mapping from the source's stream to the function, and its on-failure
destination.

``DynamoEventSource`` is not used: it reads the stream from ``table.table_stream_arn``
instead of the one the construct bound (see :mod:`.streams`), which an imported table may
lack and a ``TableV2`` reports stream or not, and it grants through
``table.grant_stream_read()`` (see :mod:`.permissions` for why not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import compliance
from .validation import MappingOptions


def create_on_failure(
    scope: Construct, on_failure: lambda_.IEventSourceDlq | None
) -> tuple[sqs.Queue | None, lambda_.IEventSourceDlq]:
    """The queue the construct made (None when given ``on_failure``) and the destination:
    ``on_failure``, or that encrypted, TLS-only queue keeping messages 14 days."""
    if on_failure is not None:
        return None, on_failure
    queue = sqs.Queue(
        scope,
        "DeadLetterQueue",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    compliance.acknowledge(queue, compliance.QUEUE_IS_A_DLQ)
    return queue, sources.SqsDlq(queue)


def create_mapping(
    scope: Construct,
    options: MappingOptions,
    function: lambda_.IFunction,
    stream_arn: str,
    on_failure: lambda_.IEventSourceDlq,
    patterns: Sequence[Mapping[str, Any]],
) -> lambda_.EventSourceMapping:
    """The mapping, reporting partial batch failures, filtered by ``patterns``.

    ``filter_encryption`` goes to aws-cdk-lib, which sets ``KmsKeyArn`` and grants the Lambda
    service ``kms:Decrypt`` in the key's policy. Enabled, the mapping leaves ``Enabled`` out
    (CloudFormation's default), so the template is the one from before the option."""
    # aws-cdk-lib checks maxRecordAge with toSeconds() < 60, which every token fails, so a
    # token (Duration.seconds, checked in MappingOptions) goes to the CloudFormation property.
    age = options.max_record_age
    mapping = lambda_.EventSourceMapping(
        scope,
        "EventSourceMapping",
        target=function,
        event_source_arn=stream_arn,
        starting_position=options.starting_position,
        batch_size=options.batch_size,
        max_batching_window=options.max_batching_window,
        parallelization_factor=options.parallelization_factor,
        retry_attempts=options.retry_attempts,
        max_record_age=None if age.is_unresolved() else age,
        bisect_batch_on_error=options.bisect_batch_on_error,
        on_failure=on_failure,
        report_batch_item_failures=True,
        filters=[lambda_.FilterCriteria.filter(p) for p in patterns],
        filter_encryption=options.filter_encryption,
        enabled=None if options.enabled else False,
        # Lambda's own counts per mapping (polled, filtered out, invoked, failed, dropped,
        # sent to the on-failure destination): where records given up on are counted.
        metrics_config=lambda_.MetricsConfig(metrics=[lambda_.MetricType.EVENT_COUNT]),
    )
    if age.is_unresolved():
        resource = mapping.node.default_child
        assert isinstance(resource, lambda_.CfnEventSourceMapping)
        resource.maximum_record_age_in_seconds = age.to_seconds()
    if function.role is not None:  # the mapping checks its permissions: wait for the policy
        mapping.node.add_dependency(function.role)
    return mapping
