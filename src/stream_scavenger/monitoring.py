"""The scavenger's metrics, its alarms and its dashboard, built next to the construct.

:class:`ScavengerMetrics` builds every metric (the construct's ``metric_*()`` methods hand
over to it); :func:`create_monitoring` makes the alarms, created by default so a failing
scavenger cannot stay silent, and the optional dashboard from those metrics.

Every alarm treats missing data as not breaching: an idle scavenger (no records, so no
data points) does not alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .runtime.scavenger.config import (
    METRICS,
    METRICS_DIMENSION,
    METRICS_NAMESPACE,
    TARGET_DIMENSION,
    TARGET_METRICS,
)
from .targets import ResolvedTarget, same_table
from .validation import ScavengerConfigError

PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class AlarmThresholds:
    """Thresholds of the default alarms; set one to ``None`` to switch that alarm off.

    Counts are sums over 5-minute periods; ``evaluation_periods`` is how many
    consecutive periods must breach.
    """

    errors: float | None = 1
    """Function errors (the scavenger handles bad records itself, so any error is news)."""
    throttles: float | None = 1
    """Lambda throttles of the function, sustained for 3 periods (15 minutes)."""
    iterator_age: Duration | None = Duration.minutes(30)
    """Maximum stream iterator age: the stream is falling behind. Default 30 minutes, well
    inside the 24-hour stream retention and half the default ``max_record_age``."""
    dead_letter_messages: float | None = 1
    """Messages visible in the construct's on-failure queue: records were given up on."""
    destination_delivery_failures: float | None = 1
    """Failures to deliver to the on-failure destination: records were given up on and lost."""
    records_reported: float | None = 1
    """Records reported for replay, sustained for 3 periods: deletes keep failing."""
    unmappable_records: float | None = 1
    """Records that could never name a target key: a data or mapping problem."""
    dropped_events: float | None = 1
    """Records the event source mapping gave up on (its ``DroppedEventCount`` or
    ``OnFailureDestinationDeliveredEventCount``), whatever the on-failure destination."""
    throttled_out: float | None = 1
    """Invocations that ran out of time while the target throttled, sustained for 3 periods:
    the target is under-provisioned for this stream."""

    @classmethod
    def off(cls) -> AlarmThresholds:
        """No alarms at all (build your own from the construct's ``metric_*()`` methods)."""
        return cls(**dict.fromkeys(cls.__dataclass_fields__))


#: Alarms that must breach in this many consecutive periods (others: one).
_SUSTAINED = {"throttles": 3, "records_reported": 3, "throttled_out": 3}
_MEANING = {
    "errors": "the scavenger function failed",
    "throttles": "the scavenger function is throttled",
    "iterator_age": "the scavenger is falling behind its stream",
    "dead_letter_messages": "records were given up on (see the on-failure queue)",
    "destination_delivery_failures": "records were given up on and could not be reported",
    "records_reported": "deletes keep failing and records are being replayed",
    "unmappable_records": "stream records could not be mapped to a target key",
    "dropped_events": "the event source mapping gave up on records (dropped or sent to the "
    "on-failure destination)",
    "throttled_out": "the target table is under-provisioned: invocations run out of time "
    "while it throttles (raise its capacity, use on-demand, a smaller batch_size or a longer "
    "timeout)",
}
#: Lambda's metrics of an event source mapping (``metrics_config`` EventCount), by name.
MAPPING_METRICS = (
    "PolledEventCount",
    "FilteredOutEventCount",
    "InvokedEventCount",
    "FailedInvokeEventCount",
    "DroppedEventCount",
    "OnFailureDestinationDeliveredEventCount",
)


class ScavengerMetrics:
    """The metrics of one scavenger: its function's own (namespace ``StreamScavenger``),
    Lambda's of the function and of its event source mapping (``AWS/Lambda``) and its
    on-failure queue's (``AWS/SQS``); 5-minute periods."""

    def __init__(
        self,
        scope: Construct,
        function: lambda_.IFunction,
        dead_letter_queue: sqs.IQueue | None,
        targets: Sequence[ResolvedTarget],
        mapping: lambda_.IEventSourceMapping,
    ) -> None:
        self._path = scope.node.path
        self._function = function
        self._mapping = mapping
        self._queue = dead_letter_queue
        self._targets = list(targets)

    def own(
        self, metric_name: str, *, target: dynamodb.ITable | None = None, **options: Any
    ) -> cloudwatch.Metric:
        """One of the function's own metrics, summed unless ``options`` say otherwise;
        ``target`` narrows a per-target metric to one table."""
        if metric_name not in METRICS:
            raise ScavengerConfigError(
                f"metric_name must be one of {sorted(METRICS)}, got {metric_name!r}",
                path=self._path,
            )
        dimensions = {METRICS_DIMENSION: self._function.function_name}
        if target is not None:
            if metric_name not in TARGET_METRICS:
                raise ScavengerConfigError(
                    f"target: {metric_name} is not per target; per-target metrics are "
                    f"{list(TARGET_METRICS)}",
                    path=self._path,
                )
            if not any(same_table(t.table, target) for t in self._targets):
                raise ScavengerConfigError(
                    f"target: {target.node.path} is not a target of this scavenger",
                    path=self._path,
                )
            if len(self._targets) > 1:
                dimensions[TARGET_DIMENSION] = target.table_name
        props: dict[str, Any] = {"statistic": "Sum", "period": PERIOD, **options}
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map=dimensions,
            **props,
        )

    def invocations(self, **options: Any) -> cloudwatch.Metric:
        """The function's invocations (AWS/Lambda)."""
        return self._function.metric_invocations(**{"period": PERIOD, **options})

    def errors(self, **options: Any) -> cloudwatch.Metric:
        """The function's errors (AWS/Lambda)."""
        return self._function.metric_errors(**{"period": PERIOD, **options})

    def function_throttles(self, **options: Any) -> cloudwatch.Metric:
        """Lambda throttles of the function (AWS/Lambda)."""
        return self._function.metric_throttles(**{"period": PERIOD, **options})

    def iterator_age(self, **options: Any) -> cloudwatch.Metric:
        """Maximum age of the last record of each batch, in ms."""
        return self._function.metric(
            "IteratorAge", **{"statistic": "Maximum", "period": PERIOD, **options}
        )

    def destination_delivery_failures(self, **options: Any) -> cloudwatch.Metric:
        """Failures to send records given up on to the on-failure destination."""
        return self._function.metric(
            "DestinationDeliveryFailures", **{"statistic": "Sum", "period": PERIOD, **options}
        )

    def mapping_events(self, metric_name: str, **options: Any) -> cloudwatch.Metric:
        """One of Lambda's event counts of the mapping (:data:`MAPPING_METRICS`), summed."""
        if metric_name not in MAPPING_METRICS:
            raise ScavengerConfigError(
                f"metric_name must be one of {list(MAPPING_METRICS)}, got {metric_name!r}",
                path=self._path,
            )
        props: dict[str, Any] = {"statistic": "Sum", "period": PERIOD, **options}
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=metric_name,
            dimensions_map={"EventSourceMappingUUID": self._mapping.event_source_mapping_id},
            **props,
        )

    def dropped_events(self) -> cloudwatch.MathExpression:
        """Records the mapping gave up on: the larger of its dropped and delivered-to-the-
        on-failure-destination counts (either is enough to know records were given up on)."""
        return cloudwatch.MathExpression(
            expression="MAX([FILL(dropped, 0), FILL(delivered, 0)])",
            using_metrics={
                "dropped": self.mapping_events("DroppedEventCount"),
                "delivered": self.mapping_events("OnFailureDestinationDeliveredEventCount"),
            },
            label="Records given up on",
            period=PERIOD,
        )

    def dead_letter_messages(self, **options: Any) -> cloudwatch.Metric | None:
        """Messages visible in the construct's on-failure queue; None when it made none."""
        if self._queue is None:
            return None
        return self._queue.metric_approximate_number_of_messages_visible(
            **{"statistic": "Maximum", "period": PERIOD, **options}
        )

    def for_alarms(self) -> dict[str, cloudwatch.IMetric]:
        """The metric of each alarm, by threshold name (see :class:`AlarmThresholds`)."""
        metrics: dict[str, cloudwatch.IMetric] = {
            "errors": self.errors(),
            "throttles": self.function_throttles(),
            "iterator_age": self.iterator_age(),
            "destination_delivery_failures": self.destination_delivery_failures(),
            "records_reported": self.own("RecordsReported"),
            "unmappable_records": self.own("UnmappableRecords"),
            "dropped_events": self.dropped_events(),
            "throttled_out": self.own("ThrottledOut"),
        }
        dead_letters = self.dead_letter_messages()
        if dead_letters is not None:
            metrics["dead_letter_messages"] = dead_letters
        return metrics

    def for_dashboard(self) -> dict[str, cloudwatch.IMetric]:
        """The alarms' metrics and the counts of deletes, matches, retries and capacity."""
        return {
            **self.for_alarms(),
            "invocations": self.invocations(),
            "keys_deleted": self.own("KeysDeleted"),
            "records_matched": self.own("RecordsMatched"),
            "retries": self.own("Retries"),
            "throttled_requests": self.own("Throttles"),
            "consumed_write_capacity": self.own("ConsumedWriteCapacity"),
            **{
                name: self.mapping_events(name)
                for name in ("PolledEventCount", "FilteredOutEventCount", "InvokedEventCount")
            },
        }

    def per_target(self) -> dict[str, list[cloudwatch.IMetric]]:
        """With several targets, a line per target for deletes and replays, by graph title."""
        if len(self._targets) == 1:
            return {}
        return {
            title: [self.own(name, target=t.table, label=t.table.node.id) for t in self._targets]
            for title, name in (
                ("Keys deleted per target", "KeysDeleted"),
                ("Records reported per target", "RecordsReported"),
            )
        }


def create_monitoring(
    scope: Construct,
    metrics: ScavengerMetrics,
    thresholds: AlarmThresholds | None,
    actions: Sequence[cloudwatch.IAlarmAction] | None,
    topic: sns.ITopic | None,
    dashboard: bool | str,
) -> tuple[dict[str, cloudwatch.Alarm], cloudwatch.Dashboard | None]:
    """The alarms (each notifying ``actions`` and ``topic``) and, when asked, the dashboard."""
    every_action = list(actions or [])
    if topic is not None:
        every_action.append(cloudwatch_actions.SnsAction(topic))
    alarms = create_alarms(
        scope, metrics.for_alarms(), thresholds or AlarmThresholds(), every_action
    )
    if not dashboard:
        return alarms, None
    name = dashboard if isinstance(dashboard, str) else None
    return alarms, create_dashboard(scope, name, metrics.for_dashboard(), metrics.per_target())


def validate_thresholds(thresholds: AlarmThresholds) -> None:
    """Thresholds must be positive (an alarm at 0 would always fire); a token passes (a count
    as a number token, ``iterator_age`` as ``Duration.millis(<token>)``)."""
    for name, value in vars(thresholds).items():
        if value is None or (not isinstance(value, Duration) and Token.is_unresolved(value)):
            continue
        if isinstance(value, Duration) and value.is_unresolved():
            if value.unit_label() != "millis":
                raise ScavengerConfigError(
                    f"alarms.{name} comes from a token, so it must be Duration.millis(<token>) "
                    f"(the alarm compares milliseconds), got Duration.{value.unit_label()}"
                )
            continue
        number = value.to_seconds(integral=False) if isinstance(value, Duration) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise ScavengerConfigError(
                f"alarms.{name} must be a positive threshold or None (off), got {value!r}"
            )


def create_alarms(
    scope: Construct,
    metrics: dict[str, cloudwatch.IMetric],
    thresholds: AlarmThresholds,
    actions: Sequence[cloudwatch.IAlarmAction],
) -> dict[str, cloudwatch.Alarm]:
    """One alarm per threshold that is set and whose metric exists; keyed by threshold name."""
    validate_thresholds(thresholds)
    alarms: dict[str, cloudwatch.Alarm] = {}
    for name, value in vars(thresholds).items():
        if value is None or name not in metrics:
            continue
        threshold = value.to_milliseconds() if isinstance(value, Duration) else value
        alarm = cloudwatch.Alarm(
            scope,
            "".join(part.title() for part in name.split("_")) + "Alarm",
            metric=metrics[name],
            threshold=threshold,
            evaluation_periods=_SUSTAINED.get(name, 1),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"stream-scavenger {scope.node.path}: {_MEANING[name]}",
        )
        for action in actions:
            alarm.add_alarm_action(action)
        alarms[name] = alarm
    return alarms


def create_dashboard(
    scope: Construct,
    name: str | None,
    metrics: dict[str, cloudwatch.IMetric],
    per_target: dict[str, list[cloudwatch.IMetric]] | None = None,
) -> cloudwatch.Dashboard:
    """Invocations, errors, throttles, iterator age, deletes vs matches, retries and throttled
    invocations, replayed and unmappable records, records given up on, consumed write
    capacity and the mapping's event counts; with several
    targets also keys deleted and records reported per target (``per_target``, by title)."""

    def graph(title: str, *names: str) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title=title, left=[metrics[n] for n in names if n in metrics], width=8, height=6
        )

    dashboard = cloudwatch.Dashboard(scope, "Dashboard", dashboard_name=name)
    dashboard.add_widgets(
        graph("Invocations, errors, throttles", "invocations", "errors", "throttles"),
        graph("Iterator age (max, ms)", "iterator_age"),
        graph("Keys deleted vs records matched", "keys_deleted", "records_matched"),
    )
    dashboard.add_widgets(
        graph(
            "Retries, throttled requests, throttled out",
            "retries",
            "throttled_requests",
            "throttled_out",
        ),
        graph("Replayed and unmappable records", "records_reported", "unmappable_records"),
        graph(
            "Given up on: mapping, queue depth, delivery failures",
            "dropped_events",
            "dead_letter_messages",
            "destination_delivery_failures",
        ),
    )
    dashboard.add_widgets(
        graph("Consumed write capacity (WCU)", "consumed_write_capacity"),
        graph(
            "Mapping: polled, filtered out, invoked",
            "PolledEventCount",
            "FilteredOutEventCount",
            "InvokedEventCount",
        ),
        *(
            cloudwatch.GraphWidget(title=title, left=lines, width=8, height=6)
            for title, lines in (per_target or {}).items()
        ),
    )
    return dashboard
