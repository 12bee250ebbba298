"""The StreamScavenger construct."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import compliance
from .alarms import PERIOD, AlarmThresholds, create_alarms
from .dashboard import create_dashboard
from .events import EventName
from .filters import images_in_filters, merge_filters
from .runtime.scavenger.config import (
    METRICS,
    METRICS_DIMENSION,
    METRICS_NAMESPACE,
    TARGET_DIMENSION,
    TARGET_METRICS,
    ScavengerConfig,
)
from .streams import bind_stream, required_images
from .tables import key_schema_of
from .targets import (
    ResolvedTarget,
    ScavengerTarget,
    check_filters_reach,
    resolve_targets,
    same_table,
)
from .validation import ScavengerConfigError, check_duration, check_int

#: The directory shipped as the function's code: the ``scavenger`` package only.
RUNTIME_ASSET_DIR = Path(__file__).parent / "runtime"
HANDLER = "scavenger.handler.handler"

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
    #: The source stream's view type; None for an imported table (not inspectable).
    stream_view_type: dynamodb.StreamViewType | None
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
        filters: Sequence[Mapping[str, Any]] | None = None,
        memory_size: int = DEFAULT_MEMORY_SIZE,
        timeout: Duration = DEFAULT_TIMEOUT,
        log_retention: logs.RetentionDays = DEFAULT_LOG_RETENTION,
        log_level: str = "INFO",
        log_item_keys: bool = False,
        alarm_thresholds: AlarmThresholds | None = None,
        alarm_actions: Sequence[cloudwatch.IAlarmAction] | None = None,
        alarm_topic: sns.ITopic | None = None,
        dashboard: bool | str = False,
        dry_run: bool = False,
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
        :param filters: Extra Lambda event-filter patterns; a record must match one of them
            and a selected event name.
        :param memory_size: Function memory in MB, 128..10240. Default: 256.
        :param timeout: Function timeout, 5 s..15 min. Default: 60 s.
        :param log_retention: Log group retention. Default: one month.
        :param log_level: Application log level: DEBUG, INFO, WARN or ERROR. Default: INFO.
        :param log_item_keys: Log the key values being deleted at DEBUG level. Default: False
            (logs never carry item data).
        :param alarm_thresholds: Thresholds of the default alarms; a field set to None switches
            that alarm off, ``AlarmThresholds.off()`` all of them. Default: ``AlarmThresholds()``.
        :param alarm_actions: Actions every alarm triggers (on ALARM).
        :param alarm_topic: An SNS topic every alarm notifies (added to ``alarm_actions``).
        :param dashboard: True for a CloudWatch dashboard, or a string to name it.
        :param dry_run: Deploy everything but delete nothing: the function computes and counts
            the keys it would delete (metrics and a count-only log line), and its role gets no
            write permission at all. Default: False.
        """
        super().__init__(scope, id)
        check_int("batch_size", batch_size, 1, 10000)
        if max_batching_window is not None:
            check_duration("max_batching_window", max_batching_window, 0, 300)
        check_int("parallelization_factor", parallelization_factor, 1, 10)
        if starting_position not in (
            lambda_.StartingPosition.TRIM_HORIZON,
            lambda_.StartingPosition.LATEST,
        ):
            raise ScavengerConfigError(
                "starting_position must be StartingPosition.TRIM_HORIZON or LATEST for "
                f"DynamoDB streams, got {starting_position}"
            )
        check_int("retry_attempts", retry_attempts, 0, 10000)
        check_duration("max_record_age", max_record_age, 60, 604800)
        check_int("memory_size", memory_size, 128, 10240)
        check_duration("timeout", timeout, 5, 900)
        level = _application_log_level(log_level)
        if log_item_keys and level != lambda_.ApplicationLogLevel.DEBUG:
            raise ScavengerConfigError(
                "log_item_keys=True logs keys at DEBUG level: set log_level='DEBUG' as well"
            )

        source_schema = key_schema_of(source_table)
        self.targets = resolve_targets(
            target_table, targets, key_mapping, event_names, source_schema
        )
        self.event_names = [e for e in EventName if any(e in t.event_names for t in self.targets)]
        self.dry_run = dry_run
        patterns = merge_filters(self.event_names, filters)
        check_filters_reach(self.targets, patterns)
        filter_images = images_in_filters(patterns)
        images = frozenset().union(
            *(
                required_images(t.key_mapping, source_schema, t.event_names, filter_images)
                for t in self.targets
            )
        )
        self.stream_arn, self.stream_view_type = bind_stream(source_table, images)

        config = ScavengerConfig(
            targets=tuple(t.config() for t in self.targets),
            log_items=log_item_keys,
            dry_run=dry_run,
        )

        self.log_group = logs.LogGroup(self, "LogGroup", retention=log_retention)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="stream-scavenger: read one stream, delete from "
            + ("one table" if len(self.targets) == 1 else f"{len(self.targets)} tables"),
        )
        self.log_group.grant_write(self.role)
        self._grant_stream_read(source_table)
        if not dry_run:
            self._grant_deletes([t.table for t in self.targets])

        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(RUNTIME_ASSET_DIR), exclude=["**/__pycache__", "**/*.pyc"]
            ),
            memory_size=memory_size,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=level,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            environment=config.to_env(),
            description="stream-scavenger: deletes target items named by stream records",
        )

        if on_failure is None:
            self.dead_letter_queue = sqs.Queue(
                self,
                "DeadLetterQueue",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=Duration.days(14),
            )
            compliance.acknowledge(self.dead_letter_queue, compliance.QUEUE_IS_A_DLQ)
            on_failure = sources.SqsDlq(self.dead_letter_queue)
        else:
            self.dead_letter_queue = None
        self.on_failure = on_failure

        self.event_source_mapping = lambda_.EventSourceMapping(
            self,
            "EventSourceMapping",
            target=self.function,
            event_source_arn=self.stream_arn,
            starting_position=starting_position,
            batch_size=batch_size,
            max_batching_window=max_batching_window,
            parallelization_factor=parallelization_factor,
            retry_attempts=retry_attempts,
            max_record_age=max_record_age,
            bisect_batch_on_error=bisect_batch_on_error,
            on_failure=on_failure,
            report_batch_item_failures=True,
            filters=[lambda_.FilterCriteria.filter(p) for p in patterns],
        )
        # The mapping validates its permissions on creation: wait for the policy.
        self.event_source_mapping.node.add_dependency(self.role)

        actions = list(alarm_actions or [])
        if alarm_topic is not None:
            actions.append(cloudwatch_actions.SnsAction(alarm_topic))
        self.alarms = create_alarms(
            self, self._alarm_metrics(), alarm_thresholds or AlarmThresholds(), actions
        )
        self.dashboard = None
        if dashboard:
            name = dashboard if isinstance(dashboard, str) else None
            self.dashboard = create_dashboard(
                self, name, self._dashboard_metrics(), self._per_target_metrics()
            )

    @property
    def key_mapping(self) -> dict[str, str]:
        """Target key attribute -> source attribute, complete (one target only; with
        several, read ``targets[i].key_mapping``)."""
        if len(self.targets) != 1:
            raise ScavengerConfigError(
                f"this scavenger has {len(self.targets)} targets: read targets[i].key_mapping"
            )
        return self.targets[0].key_mapping

    # ---- metrics -------------------------------------------------------------------------

    def metric(
        self, metric_name: str, *, target: dynamodb.ITable | None = None, **options: Any
    ) -> cloudwatch.Metric:
        """One of the function's own metrics (namespace ``StreamScavenger``), summed over
        5 minutes unless ``options`` (any ``cloudwatch.Metric`` keyword) say otherwise.

        ``target`` narrows one of ``RecordsMatched``, ``UnmappableRecords``,
        ``DuplicateKeys``, ``KeysDeleted`` or ``RecordsReported`` to one target table
        (with a single target that is the function's own metric)."""
        if metric_name not in METRICS:
            raise ScavengerConfigError(
                f"metric_name must be one of {sorted(METRICS)}, got {metric_name!r}"
            )
        dimensions = {METRICS_DIMENSION: self.function.function_name}
        if target is not None:
            if metric_name not in TARGET_METRICS:
                raise ScavengerConfigError(
                    f"target: {metric_name} is not per target; per-target metrics are "
                    f"{list(TARGET_METRICS)}"
                )
            if not any(same_table(t.table, target) for t in self.targets):
                raise ScavengerConfigError(
                    f"target: {target.node.path} is not a target of this scavenger"
                )
            if len(self.targets) > 1:
                dimensions[TARGET_DIMENSION] = target.table_name
        props: dict[str, Any] = {"statistic": "Sum", "period": PERIOD, **options}
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map=dimensions,
            **props,
        )

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

    def metric_throttled_requests(self, **options: Any) -> cloudwatch.Metric:
        """BatchWriteItem requests the target table throttled."""
        return self.metric("Throttles", **options)

    def metric_consumed_write_capacity(self, **options: Any) -> cloudwatch.Metric:
        """Write capacity units the deletes consumed."""
        return self.metric("ConsumedWriteCapacity", **options)

    def metric_batch_latency(self, **options: Any) -> cloudwatch.Metric:
        """Milliseconds per invocation, p99 by default."""
        return self.metric("BatchLatency", **{"statistic": "p99", **options})

    def metric_invocations(self, **options: Any) -> cloudwatch.Metric:
        """The function's invocations (AWS/Lambda)."""
        return self.function.metric_invocations(**{"period": PERIOD, **options})

    def metric_errors(self, **options: Any) -> cloudwatch.Metric:
        """The function's errors (AWS/Lambda)."""
        return self.function.metric_errors(**{"period": PERIOD, **options})

    def metric_throttles(self, **options: Any) -> cloudwatch.Metric:
        """Lambda throttles of the function (AWS/Lambda)."""
        return self.function.metric_throttles(**{"period": PERIOD, **options})

    def metric_iterator_age(self, **options: Any) -> cloudwatch.Metric:
        """Maximum age of the last record of each batch, in ms: how far behind the stream."""
        return self.function.metric(
            "IteratorAge", **{"statistic": "Maximum", "period": PERIOD, **options}
        )

    def metric_destination_delivery_failures(self, **options: Any) -> cloudwatch.Metric:
        """Failures to send records given up on to the on-failure destination."""
        return self.function.metric(
            "DestinationDeliveryFailures", **{"statistic": "Sum", "period": PERIOD, **options}
        )

    def metric_dead_letter_messages(self, **options: Any) -> cloudwatch.Metric | None:
        """Messages visible in the construct's on-failure queue; None when it made none."""
        if self.dead_letter_queue is None:
            return None
        return self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            **{"statistic": "Maximum", "period": PERIOD, **options}
        )

    def _alarm_metrics(self) -> dict[str, cloudwatch.IMetric]:
        metrics: dict[str, cloudwatch.IMetric] = {
            "errors": self.metric_errors(),
            "throttles": self.metric_throttles(),
            "iterator_age": self.metric_iterator_age(),
            "destination_delivery_failures": self.metric_destination_delivery_failures(),
            "records_reported": self.metric_records_reported(),
            "unmappable_records": self.metric_unmappable_records(),
        }
        dead_letters = self.metric_dead_letter_messages()
        if dead_letters is not None:
            metrics["dead_letter_messages"] = dead_letters
        return metrics

    def _dashboard_metrics(self) -> dict[str, cloudwatch.IMetric]:
        return {
            **self._alarm_metrics(),
            "invocations": self.metric_invocations(),
            "keys_deleted": self.metric_keys_deleted(),
            "records_matched": self.metric_records_matched(),
            "retries": self.metric_retries(),
            "throttled_requests": self.metric_throttled_requests(),
            "consumed_write_capacity": self.metric_consumed_write_capacity(),
        }

    def _per_target_metrics(self) -> dict[str, list[cloudwatch.IMetric]]:
        if len(self.targets) == 1:
            return {}
        return {
            title: [self.metric(name, target=t.table, label=t.table.node.id) for t in self.targets]
            for title, name in (
                ("Keys deleted per target", "KeysDeleted"),
                ("Records reported per target", "RecordsReported"),
            )
        }

    def _grant_stream_read(self, table: dynamodb.ITable) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                ],
                resources=[self.stream_arn],
            )
        )
        # The event source mapping calls ListStreams, which has no resource-level permissions.
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:ListStreams"], resources=["*"])
        )
        compliance.acknowledge(self.role, compliance.LIST_STREAMS_WILDCARD)
        if table.encryption_key is not None:
            table.encryption_key.grant(self.role, "kms:Decrypt")

    def _grant_deletes(self, tables: Sequence[dynamodb.ITable]) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:BatchWriteItem"], resources=[t.table_arn for t in tables]
            )
        )
        # Writes to a table under a customer-managed key use the key both ways.
        actions = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*")
        keys = [t.encryption_key for t in tables if t.encryption_key is not None]
        for key in keys:
            key.grant(self.role, *actions)
        if keys:
            compliance.acknowledge(self.role, *compliance.kms_wildcard_actions(*actions))


def _application_log_level(level: str) -> lambda_.ApplicationLogLevel:
    allowed = {
        "DEBUG": "DEBUG",
        "INFO": "INFO",
        "WARN": "WARN",
        "WARNING": "WARN",
        "ERROR": "ERROR",
    }
    name = allowed.get(str(level).upper())
    if name is None:
        raise ScavengerConfigError(f"log_level must be DEBUG, INFO, WARN or ERROR, got {level!r}")
    return lambda_.ApplicationLogLevel[name]
