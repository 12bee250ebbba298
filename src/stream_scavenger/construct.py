"""The StreamScavenger construct: its constructor is a table of contents of named steps."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .backfill_machine import BackfillOptions, ScavengerBackfill, backfill_options
from .event_source import create_mapping, create_on_failure
from .events import EventName, stream_order
from .function import RUNTIME_ASSET_DIR as RUNTIME_ASSET_DIR
from .function import create_function
from .monitoring import AlarmThresholds, ScavengerMetrics, create_monitoring
from .permissions import create_role
from .runtime.scavenger.backfill import BackfillError, check_filters
from .runtime.scavenger.config import HANDLER as HANDLER  # re-exported: the one definition
from .runtime.scavenger.config import backfill_event
from .streams import SourceStream, images_read
from .tables import key_schema_of
from .targets import ResolvedTarget, ScavengerTarget, filter_patterns, resolve_targets
from .validation import FunctionOptions, MappingOptions, ScavengerConfigError, naming_errors

DEFAULT_BATCH_SIZE = 100
#: Enough for bisection to isolate one record of a 1,000-record batch, and then retry it.
DEFAULT_RETRY_ATTEMPTS = 10
#: Bounds how long one failing batch holds back its shard, and leaves 23 of the
#: stream's 24 hours of retention to redrive from the on-failure queue.
DEFAULT_MAX_RECORD_AGE = Duration.hours(1)
DEFAULT_MEMORY_SIZE = 256
DEFAULT_TIMEOUT = Duration.seconds(60)
DEFAULT_LOG_RETENTION = logs.RetentionDays.ONE_MONTH


class StreamScavenger(Construct):
    """Deletes items from ``target_table`` when matching items change in ``source_table``.

    Enables the source's DynamoDB stream with the smallest view type that
    works, and wires it to a bundled Lambda function that deletes the matching
    target keys with ``BatchWriteItem``, reporting partial batch failures so no
    record whose key was not deleted is acknowledged. With ``targets=`` one
    function and one event source mapping clean up several tables.
    """

    #: The scavenger Lambda function.
    function: lambda_.Function
    #: The function's execution role (least privilege, inline policy only).
    role: iam.Role
    #: The function's log group, with a retention set.
    log_group: logs.LogGroup
    #: The event source mapping from the source's stream to the function.
    event_source_mapping: lambda_.EventSourceMapping
    #: The on-failure queue the construct created; None when ``on_failure`` was given.
    dead_letter_queue: sqs.Queue | None
    #: Where records given up on are reported.
    on_failure: lambda_.IEventSourceDlq
    #: The source stream's ARN.
    stream_arn: str
    #: The tables deleted from, each with its complete key mapping and event names.
    targets: list[ResolvedTarget]
    #: The stream events that trigger deletes (in any target).
    event_names: list[EventName]
    #: The alarms created, by threshold name (see :class:`AlarmThresholds`).
    alarms: dict[str, cloudwatch.Alarm]
    #: The dashboard, when ``dashboard`` was set.
    dashboard: cloudwatch.Dashboard | None
    #: True when the scavenger only counts what it would delete.
    dry_run: bool
    #: The backfill state machine and its worker, when ``backfill`` was set.
    backfill: ScavengerBackfill | None

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source_table: dynamodb.ITable,
        target_table: dynamodb.ITable | None = None,
        targets: Sequence[ScavengerTarget] | None = None,
        key_mapping: Mapping[str, str] | None = None,
        event_names: Sequence[EventName | str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batching_window: Duration | None = None,
        parallelization_factor: int = 1,
        starting_position: lambda_.StartingPosition = lambda_.StartingPosition.TRIM_HORIZON,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        max_record_age: Duration = DEFAULT_MAX_RECORD_AGE,
        bisect_batch_on_error: bool = True,
        on_failure: lambda_.IEventSourceDlq | None = None,
        enabled: bool = True,
        filters: Sequence[Mapping[str, Any]] | None = None,
        filter_encryption: kms.IKey | None = None,
        memory_size: int = DEFAULT_MEMORY_SIZE,
        timeout: Duration = DEFAULT_TIMEOUT,
        log_retention: logs.RetentionDays = DEFAULT_LOG_RETENTION,
        log_level: str = "INFO",
        log_item_keys: bool = False,
        tracing: lambda_.Tracing | None = None,
        alarm_thresholds: AlarmThresholds | None = None,
        alarm_actions: Sequence[cloudwatch.IAlarmAction] | None = None,
        alarm_topic: sns.ITopic | None = None,
        dashboard: bool | str = False,
        dry_run: bool = False,
        backfill: bool | BackfillOptions = False,
    ) -> None:
        """Create the scavenger.

        :param source_table: Table whose stream triggers deletes: a ``Table`` or ``TableV2``
            of this app, or an imported table that carries its stream ARN.
        :param target_table: Table whose items are deleted. Either this or ``targets``.
        :param targets: Several tables to delete from, ``[ScavengerTarget(table,
            key_mapping=..., event_names=...), ...]`` (1..10, each table once): one function
            and one event source mapping for all, deletes for all tables packed into the same
            ``BatchWriteItem`` requests. Either this or ``target_table``.
        :param key_mapping: Target key attribute -> source attribute (a key or non-key
            attribute of the source item), or a template such as ``"STAGING#{messageId}"``
            that renders a string key. Default: same names as the target's key. With
            ``targets``, set it on each ``ScavengerTarget`` instead.
        :param event_names: Stream events that trigger a delete. Default: ``["INSERT"]``.
            With ``targets``, the default for targets that set none.
        :param batch_size: Records per invocation, 1..10000. Default: 100.
        :param max_batching_window: How long to gather records, 0..300 s. Default: none.
        :param parallelization_factor: Concurrent batches per shard, 1..10. Default: 1.
        :param starting_position: ``TRIM_HORIZON`` (default) or ``LATEST``.
        :param retry_attempts: Retries of a failing batch, 0..10000. Default: 10.
        :param max_record_age: Oldest record sent to the function, 60 s..7 days. Default: 1 hour.
        :param bisect_batch_on_error: Split a failing batch before retrying. Default: True.
        :param on_failure: Where to report records given up on. Default: an encrypted,
            TLS-only SQS queue with 14-day retention, made by the construct.
        :param enabled: False pauses the mapping without deleting it (``Enabled: false``):
            Lambda reads nothing until it is enabled again, and records older than the
            stream's 24 hours are lost meanwhile. Default: True.
        :param filters: Extra Lambda event-filter patterns; a record must match one of them
            and a selected event name.
        :param filter_encryption: A customer-managed KMS key Lambda encrypts the mapping's
            filter criteria with (the patterns can name item values): the key's policy grants
            the Lambda service ``kms:Decrypt`` (an imported key's policy cannot be changed:
            grant it there). Needs ``filters``. Default: none (Lambda's own encryption).
        :param memory_size: Function memory in MB, 128..10240. Default: 256.
        :param timeout: Function timeout, 5 s..15 min. Default: 60 s.
        :param log_retention: Log group retention. Default: one month.
        :param log_level: Application log level: DEBUG, INFO, WARN or ERROR. Default: INFO.
        :param log_item_keys: Log the key values being deleted at DEBUG level. Default: False
            (logs never carry item data).
        :param tracing: X-Ray tracing of the function, ``Tracing.ACTIVE`` or ``PASS_THROUGH``;
            either adds ``xray:PutTraceSegments`` and ``xray:PutTelemetryRecords`` on ``*`` to
            the role (X-Ray has no resource-level permissions). Default: none (``DISABLED``
            is the same).
        :param alarm_thresholds: Thresholds of the default alarms; a field set to None switches
            that alarm off, ``AlarmThresholds.off()`` all of them. Default: ``AlarmThresholds()``.
        :param alarm_actions: Actions every alarm triggers (on ALARM).
        :param alarm_topic: An SNS topic every alarm notifies (added to ``alarm_actions``).
        :param dashboard: True for a CloudWatch dashboard, or a string to name it.
        :param dry_run: Deploy everything but delete nothing: the function computes and counts
            the keys it would delete (metrics and a count-only log line), and its role gets no
            write permission at all. Default: False.
        :param backfill: True (or ``BackfillOptions(segments=..., max_concurrency=...,
            max_write_units=..., max_read_units=..., page_size=...)``) to deploy a Step Functions
            state machine that scans the source in parallel segments and deletes what the
            stream can no longer deliver, with the same mapping, filters and targets (see
            docs/backfill.md); ``stream-scavenger backfill`` runs the same work from a
            machine. Its worker may ``Scan`` the source and ``BatchWriteItem`` the targets,
            nothing else. Default: False (nothing is added).
        """
        super().__init__(scope, id)
        with naming_errors(self):
            # The options, checked.
            mapping_options = MappingOptions(
                batch_size=batch_size,
                max_batching_window=max_batching_window,
                parallelization_factor=parallelization_factor,
                starting_position=starting_position,
                retry_attempts=retry_attempts,
                max_record_age=max_record_age,
                bisect_batch_on_error=bisect_batch_on_error,
                enabled=enabled,
                filter_encryption=filter_encryption,
                filters=filters,
            )
            function_options = FunctionOptions(
                memory_size=memory_size,
                timeout=timeout,
                log_retention=log_retention,
                log_level=log_level,
                log_item_keys=log_item_keys,
                tracing=tracing,
            )
            self.dry_run = dry_run
            # The targets, the filters and the stream.
            schema = key_schema_of(source_table)
            self.targets = resolve_targets(target_table, targets, key_mapping, event_names, schema)
            self.event_names = stream_order(e for t in self.targets for e in t.event_names)
            patterns = filter_patterns(self.targets, self.event_names, filters)
            images = images_read(self.targets, schema, patterns)
            self._stream = SourceStream(self, source_table, images)
            self.stream_arn = self._stream.arn
            # The function.
            self.log_group = logs.LogGroup(self, "LogGroup", retention=log_retention)
            self.role = create_role(
                self, self.log_group, source_table, self.stream_arn, self.targets, dry_run
            )
            self.function = create_function(
                self, function_options, self.targets, dry_run, self.role, self.log_group
            )
            # The mapping.
            self.dead_letter_queue, self.on_failure = create_on_failure(self, on_failure)
            self.event_source_mapping = create_mapping(
                self, mapping_options, self.function, self.stream_arn, self.on_failure, patterns
            )
            # The monitoring.
            self._metrics = ScavengerMetrics(
                self, self.function, self.dead_letter_queue, self.targets, self.event_source_mapping
            )
            self.alarms, self.dashboard = create_monitoring(
                self, self._metrics, alarm_thresholds, alarm_actions, alarm_topic, dashboard
            )
            # The backfill, on AWS.
            self.backfill = self._backfill(
                backfill, function_options, source_table, schema, patterns, filter_encryption
            )

    def _backfill(
        self,
        given: bool | BackfillOptions,
        function_options: FunctionOptions,
        source_table: dynamodb.ITable,
        schema: Any,
        patterns: Sequence[Mapping[str, Any]],
        filter_encryption: kms.IKey | None,
    ) -> ScavengerBackfill | None:
        options = backfill_options(given)
        if options is None:
            return None
        if schema is None:
            raise ScavengerConfigError(
                "backfill needs the source's key schema, which an imported table does not "
                "show: use stream-scavenger backfill from a machine instead"
            )
        event_name = backfill_event(frozenset(e.value for e in self.event_names))
        if event_name is None:
            raise ScavengerConfigError(
                "backfill cannot work for a scavenger that acts on REMOVE only: a scan reads "
                "the items the source holds now (see docs/backfill.md)"
            )
        try:
            check_filters(patterns)
        except BackfillError as err:
            raise ScavengerConfigError(f"backfill: {err}") from None
        view = self._stream.view_type
        if view is None:
            raise ScavengerConfigError(
                "backfill needs the source stream's view type (which images its records "
                "carry), and it is not known here: use stream-scavenger backfill from a machine"
            )
        return ScavengerBackfill(
            self,
            "Backfill",
            options=options,
            function_options=function_options,
            source_table=source_table,
            source_keys=[schema.partition_key] + ([schema.sort_key] if schema.sort_key else []),
            view_type=view.value,
            event_name=event_name,
            targets=self.targets,
            filters=[json.dumps(p) for p in patterns],
            filter_encryption=filter_encryption,
            dry_run=self.dry_run,
        )

    @property
    def key_mapping(self) -> dict[str, str]:
        """Target key attribute -> source attribute, complete (one target only; with
        several, read ``targets[i].key_mapping``)."""
        if len(self.targets) != 1:
            raise ScavengerConfigError(
                f"this scavenger has {len(self.targets)} targets: read targets[i].key_mapping",
                path=self.node.path,
            )
        return self.targets[0].key_mapping

    @property
    def stream_view_type(self) -> dynamodb.StreamViewType | None:
        """The source stream's view type as synthesized (a ``TableV2`` given replicas later
        streams NEW_AND_OLD_IMAGES); None for an imported table (not inspectable)."""
        return self._stream.view_type

    def metric(
        self, metric_name: str, *, target: dynamodb.ITable | None = None, **options: Any
    ) -> cloudwatch.Metric:
        """One of the function's own metrics (namespace ``StreamScavenger``), summed over
        5 minutes unless ``options`` (any ``cloudwatch.Metric`` keyword) say otherwise.

        ``target`` narrows one of ``RecordsMatched``, ``UnmappableRecords``,
        ``DuplicateKeys``, ``KeysDeleted`` or ``RecordsReported`` to one target table
        (with a single target that is the function's own metric)."""
        return self._metrics.own(metric_name, target=target, **options)

    def metric_keys_deleted(self, **options: Any) -> cloudwatch.Metric:
        """Target keys confirmed deleted."""
        return self.metric("KeysDeleted", **options)

    def metric_records_matched(self, **options: Any) -> cloudwatch.Metric:
        """Stream records of a selected event that named a target key."""
        return self.metric("RecordsMatched", **options)

    def metric_records_reported(self, **options: Any) -> cloudwatch.Metric:
        """Records reported back to Lambda for replay (their key was not confirmed deleted)."""
        return self.metric("RecordsReported", **options)

    def metric_unmappable_records(self, **options: Any) -> cloudwatch.Metric:
        """Records that could never name a target key (logged, not replayed)."""
        return self.metric("UnmappableRecords", **options)

    def metric_retries(self, **options: Any) -> cloudwatch.Metric:
        """BatchWriteItem retries (unprocessed items, throttling, transient errors)."""
        return self.metric("Retries", **options)

    def metric_batch_write_throttles(self, **options: Any) -> cloudwatch.Metric:
        """BatchWriteItem requests the target tables throttled (DynamoDB's, not Lambda's)."""
        return self.metric("Throttles", **options)

    def metric_consumed_write_capacity(self, **options: Any) -> cloudwatch.Metric:
        """Write capacity units the deletes consumed."""
        return self.metric("ConsumedWriteCapacity", **options)

    def metric_batch_latency(self, **options: Any) -> cloudwatch.Metric:
        """Milliseconds per invocation, p99 by default."""
        return self.metric("BatchLatency", **{"statistic": "p99", **options})

    def metric_invocations(self, **options: Any) -> cloudwatch.Metric:
        """The function's invocations (AWS/Lambda)."""
        return self._metrics.invocations(**options)

    def metric_errors(self, **options: Any) -> cloudwatch.Metric:
        """The function's errors (AWS/Lambda)."""
        return self._metrics.errors(**options)

    def metric_function_throttles(self, **options: Any) -> cloudwatch.Metric:
        """Lambda's throttles of the function (metric ``Throttles`` of ``AWS/Lambda``)."""
        return self._metrics.function_throttles(**options)

    def metric_iterator_age(self, **options: Any) -> cloudwatch.Metric:
        """Maximum age of the last record of each batch, in ms: how far behind the stream."""
        return self._metrics.iterator_age(**options)

    def metric_destination_delivery_failures(self, **options: Any) -> cloudwatch.Metric:
        """Failures to send records given up on to the on-failure destination."""
        return self._metrics.destination_delivery_failures(**options)

    def metric_dead_letter_messages(self, **options: Any) -> cloudwatch.Metric | None:
        """Messages visible in the construct's on-failure queue; None when it made none."""
        return self._metrics.dead_letter_messages(**options)

    def metric_throttled_out(self, **options: Any) -> cloudwatch.Metric:
        """Invocations that ran out of time while the target throttled (``ThrottledOut``)."""
        return self.metric("ThrottledOut", **options)

    def metric_mapping_events(self, metric_name: str, **options: Any) -> cloudwatch.Metric:
        """One of Lambda's event counts of the mapping (``AWS/Lambda``, dimension
        ``EventSourceMappingUUID``): ``PolledEventCount``, ``FilteredOutEventCount``,
        ``InvokedEventCount``, ``FailedInvokeEventCount``, ``DroppedEventCount``,
        ``OnFailureDestinationDeliveredEventCount``."""
        return self._metrics.mapping_events(metric_name, **options)

    def metric_dropped_events(self) -> cloudwatch.MathExpression:
        """Records the mapping gave up on: the larger of ``DroppedEventCount`` and
        ``OnFailureDestinationDeliveredEventCount`` per period (the ``dropped_events`` alarm)."""
        return self._metrics.dropped_events()

    def metric_throttled_requests(self, **options: Any) -> cloudwatch.Metric:
        """Deprecated: use ``metric_batch_write_throttles()`` (the same metric)."""
        return _deprecated("metric_throttled_requests", self.metric_batch_write_throttles, options)

    def metric_throttles(self, **options: Any) -> cloudwatch.Metric:
        """Deprecated: use ``metric_function_throttles()`` (the same metric)."""
        return _deprecated("metric_throttles", self.metric_function_throttles, options)


def _deprecated(old: str, new: Callable[..., cloudwatch.Metric], options: Any) -> cloudwatch.Metric:
    message = f"StreamScavenger.{old}() is deprecated: use {new.__name__}()"
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    return new(**options)
