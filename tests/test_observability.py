"""Alarms, metrics, dashboard and logs: a failing scavenger cannot stay silent."""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template

from stream_scavenger import AlarmThresholds, ScavengerConfigError, StreamScavenger
from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger.config import METRICS, ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger, make_client
from testkit.events import Context, event, record
from testkit.proxy import Fault, FaultProxy, first
from testkit.tables import put_items, scan_keys


def build(**kw: Any) -> tuple[cdk.Stack, StreamScavenger, Template]:
    stack = cdk.Stack(cdk.App(), "Obs")
    key = {"partition_key": dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)}
    scav = StreamScavenger(
        stack,
        "Scavenger",
        source_table=dynamodb.Table(stack, "Source", **key),
        target_table=dynamodb.Table(stack, "Target", **key),
        **{k: (v(stack) if callable(v) and not isinstance(v, type) else v) for k, v in kw.items()},
    )
    return stack, scav, Template.from_stack(stack)


GIVEN_UP = "Records given up on"  # the label of the one metric-math alarm


def alarms_by_metric(template: Template) -> dict[str, dict[str, Any]]:
    """Alarms by metric name (a metric-math alarm by its expression's label)."""
    out = {}
    for alarm in template.find_resources("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        name = props.get("MetricName") or next(
            m["Label"] for m in props["Metrics"] if "Expression" in m
        )
        out[name] = props
    return out


EXPECTED = {
    # metric: (namespace, statistic, threshold, evaluation periods)
    "Errors": ("AWS/Lambda", "Sum", 1, 1),
    "Throttles": ("AWS/Lambda", "Sum", 1, 3),
    "IteratorAge": ("AWS/Lambda", "Maximum", 1_800_000, 1),
    "DestinationDeliveryFailures": ("AWS/Lambda", "Sum", 1, 1),
    "ApproximateNumberOfMessagesVisible": ("AWS/SQS", "Maximum", 1, 1),
    "RecordsReported": ("StreamScavenger", "Sum", 1, 3),
    "UnmappableRecords": ("StreamScavenger", "Sum", 1, 1),
    "ThrottledOut": ("StreamScavenger", "Sum", 1, 3),
}


def test_default_alarms() -> None:
    _, scav, template = build()
    alarms = alarms_by_metric(template)
    assert set(alarms) == {*EXPECTED, GIVEN_UP}
    for metric, (namespace, statistic, threshold, periods) in EXPECTED.items():
        props = alarms[metric]
        assert (
            props["Namespace"],
            props["Statistic"],
            props["Threshold"],
            props["EvaluationPeriods"],
        ) == (
            namespace,
            statistic,
            threshold,
            periods,
        ), metric
        assert props["Period"] == 300
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["TreatMissingData"] == "notBreaching", "an idle scavenger must not alarm"
        assert "AlarmActions" not in props
    assert len(scav.alarms) == 9


def test_records_the_mapping_gives_up_on_alarm_from_its_own_event_counts() -> None:
    _, scav, template = build()
    (mapping_id,) = template.find_resources("AWS::Lambda::EventSourceMapping")
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"MetricsConfig": {"Metrics": ["EventCount"]}}
    )
    props = alarms_by_metric(template)[GIVEN_UP]
    assert (props["Threshold"], props["EvaluationPeriods"]) == (1, 1)
    assert props["TreatMissingData"] == "notBreaching"
    stats = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {
        "DroppedEventCount",
        "OnFailureDestinationDeliveredEventCount",
    }
    for stat in stats.values():
        assert stat["Metric"]["Namespace"] == "AWS/Lambda" and stat["Stat"] == "Sum"
        assert stat["Metric"]["Dimensions"] == [
            {"Name": "EventSourceMappingUUID", "Value": {"Ref": mapping_id}}
        ]
    assert scav.alarms["dropped_events"] is not None
    polled = scav.metric_mapping_events("PolledEventCount")
    assert (polled.namespace, polled.metric_name) == ("AWS/Lambda", "PolledEventCount")
    with pytest.raises(ScavengerConfigError, match="metric_name must be one of"):
        scav.metric_mapping_events("Nope")


def test_alarm_dimensions_name_the_function_or_queue_never_a_key() -> None:
    _, _, template = build()
    for metric, props in alarms_by_metric(template).items():
        if metric == GIVEN_UP:
            continue  # the mapping's UUID (test above)
        (dimension,) = props["Dimensions"]
        expected = "QueueName" if metric == "ApproximateNumberOfMessagesVisible" else "FunctionName"
        assert dimension["Name"] == expected


def test_thresholds_can_be_overridden_and_switched_off() -> None:
    thresholds = AlarmThresholds(
        errors=5, iterator_age=cdk.Duration.hours(2), throttles=None, unmappable_records=None
    )
    _, scav, template = build(alarm_thresholds=thresholds)
    alarms = alarms_by_metric(template)
    assert alarms["Errors"]["Threshold"] == 5
    assert alarms["IteratorAge"]["Threshold"] == 7_200_000
    assert "Throttles" not in alarms and "UnmappableRecords" not in alarms
    assert set(scav.alarms) == {
        "errors",
        "iterator_age",
        "dead_letter_messages",
        "destination_delivery_failures",
        "records_reported",
        "dropped_events",
        "throttled_out",
    }


def test_all_alarms_off() -> None:
    _, scav, template = build(alarm_thresholds=AlarmThresholds.off())
    template.resource_count_is("AWS::CloudWatch::Alarm", 0)
    assert scav.alarms == {}


def test_no_queue_alarm_without_the_constructs_queue() -> None:
    _, scav, template = build(on_failure=lambda st: sources.SqsDlq(sqs.Queue(st, "Mine")))
    assert "ApproximateNumberOfMessagesVisible" not in alarms_by_metric(template)
    assert scav.metric_dead_letter_messages() is None


@pytest.mark.parametrize("bad", [0, -1, cdk.Duration.seconds(0), "1"])
def test_bad_threshold_is_named(bad: Any) -> None:
    with pytest.raises(
        ScavengerConfigError, match="alarms.errors must be a positive threshold or None"
    ):
        build(alarm_thresholds=AlarmThresholds(errors=bad))


def test_every_alarm_notifies_the_topic_and_the_actions() -> None:
    _, _, template = build(
        alarm_topic=lambda st: sns.Topic(st, "Pager"),
        alarm_actions=lambda st: [actions.SnsAction(sns.Topic(st, "Chat"))],
    )
    for metric, props in alarms_by_metric(template).items():
        targets = sorted(a["Ref"] for a in props["AlarmActions"])
        assert [t[:4] for t in targets] == ["Chat", "Page"], metric


def test_metric_methods() -> None:
    stack, scav, _ = build()

    def resolved(metric: cloudwatch.IMetric) -> dict[str, Any]:
        config = metric.to_metric_config().metric_stat
        return {
            "namespace": config.namespace,
            "name": config.metric_name,
            "statistic": config.statistic,
            "period": config.period.to_seconds(),
            "dimensions": stack.resolve(config.dimensions),
        }

    deleted = resolved(scav.metric_keys_deleted())
    assert deleted["namespace"] == "StreamScavenger" and deleted["name"] == "KeysDeleted"
    assert deleted["statistic"] == "Sum" and deleted["period"] == 300
    assert deleted["dimensions"] == [
        {
            "name": "FunctionName",
            "value": {"Ref": stack.resolve(scav.function.function_name)["Ref"]},
        }
    ]
    assert resolved(scav.metric_batch_latency())["statistic"] == "p99"
    assert resolved(scav.metric_iterator_age())["statistic"] == "Maximum"
    assert resolved(scav.metric_records_matched(period=cdk.Duration.minutes(1)))["period"] == 60
    for method, name in [
        ("records_reported", "RecordsReported"),
        ("unmappable_records", "UnmappableRecords"),
        ("retries", "Retries"),
        ("batch_write_throttles", "Throttles"),
        ("consumed_write_capacity", "ConsumedWriteCapacity"),
        ("errors", "Errors"),
        ("function_throttles", "Throttles"),
        ("invocations", "Invocations"),
        ("destination_delivery_failures", "DestinationDeliveryFailures"),
    ]:
        assert resolved(getattr(scav, f"metric_{method}")())["name"] == name
    with pytest.raises(ScavengerConfigError, match="metric_name must be one of"):
        scav.metric("Nope")


def test_throttle_metrics_say_whose_and_the_old_names_are_deprecated() -> None:
    stack, scav, _ = build()
    lambdas, dynamodbs = scav.metric_function_throttles(), scav.metric_batch_write_throttles()
    assert (lambdas.namespace, lambdas.metric_name) == ("AWS/Lambda", "Throttles")
    assert (dynamodbs.namespace, dynamodbs.metric_name) == ("StreamScavenger", "Throttles")
    with pytest.warns(
        DeprecationWarning,
        match=re.escape("metric_throttles() is deprecated: use metric_function_throttles()"),
    ):
        old = scav.metric_throttles(period=cdk.Duration.minutes(1))
    assert old.namespace == "AWS/Lambda" and old.period.to_seconds() == 60
    assert stack.resolve(old.dimensions) == stack.resolve(lambdas.dimensions)
    with pytest.warns(
        DeprecationWarning,
        match=re.escape(
            "metric_throttled_requests() is deprecated: use metric_batch_write_throttles()"
        ),
    ):
        old = scav.metric_throttled_requests()
    assert (old.namespace, old.metric_name) == ("StreamScavenger", "Throttles")


def test_the_old_alarm_and_dashboard_modules_import_with_a_warning() -> None:
    import importlib
    import sys

    from stream_scavenger import monitoring

    for name in ("alarms", "dashboard"):
        sys.modules.pop(f"stream_scavenger.{name}", None)
        with pytest.warns(DeprecationWarning, match=f"stream_scavenger.{name} is deprecated"):
            module = importlib.import_module(f"stream_scavenger.{name}")
        assert all(getattr(module, n) is getattr(monitoring, n) for n in module.__all__)
    assert sys.modules["stream_scavenger.alarms"].AlarmThresholds is AlarmThresholds


def test_alarm_thresholds_take_tokens() -> None:
    def thresholds(stack: cdk.Stack) -> AlarmThresholds:
        errors = cdk.CfnParameter(stack, "Errors", type="Number").value_as_number
        age = cdk.CfnParameter(stack, "AgeMs", type="Number").value_as_number
        return AlarmThresholds(errors=errors, iterator_age=cdk.Duration.millis(age))

    _, _, template = build(alarm_thresholds=thresholds)
    alarms = alarms_by_metric(template)
    assert alarms["Errors"]["Threshold"] == {"Ref": "Errors"}
    assert alarms["IteratorAge"]["Threshold"] == {"Ref": "AgeMs"}


def test_an_iterator_age_token_must_be_in_milliseconds() -> None:
    def thresholds(stack: cdk.Stack) -> AlarmThresholds:
        age = cdk.CfnParameter(stack, "Age", type="Number").value_as_number
        return AlarmThresholds(iterator_age=cdk.Duration.seconds(age))

    with pytest.raises(
        ScavengerConfigError,
        match=r"^Obs/Scavenger: alarms\.iterator_age comes from a token, so it must be "
        r"Duration\.millis\(<token>\)",
    ):
        build(alarm_thresholds=thresholds)


def dashboard_metrics(template: Template) -> list[list[Any]]:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = "".join(p if isinstance(p, str) else json.dumps(p).replace('"', "'") for p in parts)
    widgets = json.loads(body)["widgets"]
    return [m for w in widgets for m in w["properties"]["metrics"]]


def test_dashboard_shows_the_health_on_one_screen() -> None:
    _, scav, template = build(dashboard="scavenger-health")
    template.has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": "scavenger-health"}
    )
    shown = {
        (m[0], m[1]) if isinstance(m[0], str) else ("expression", m[0]["label"])
        for m in dashboard_metrics(template)
    }
    assert shown == {
        ("expression", GIVEN_UP),
        ("AWS/Lambda", "DroppedEventCount"),  # the expression's inputs (hidden lines)
        ("AWS/Lambda", "OnFailureDestinationDeliveredEventCount"),
        ("AWS/Lambda", "PolledEventCount"),
        ("AWS/Lambda", "FilteredOutEventCount"),
        ("AWS/Lambda", "InvokedEventCount"),
        ("StreamScavenger", "ThrottledOut"),
        ("AWS/Lambda", "Invocations"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/Lambda", "DestinationDeliveryFailures"),
        ("StreamScavenger", "KeysDeleted"),
        ("StreamScavenger", "RecordsMatched"),
        ("StreamScavenger", "Retries"),
        ("StreamScavenger", "Throttles"),
        ("StreamScavenger", "RecordsReported"),
        ("StreamScavenger", "UnmappableRecords"),
        ("StreamScavenger", "ConsumedWriteCapacity"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    }
    assert scav.dashboard is not None


def test_no_dashboard_by_default() -> None:
    _, scav, template = build()
    template.resource_count_is("AWS::CloudWatch::Dashboard", 0)
    assert scav.dashboard is None


# ---- the function's own metrics and logs, on DynamoDB Local ----------------------------------


def emf_lines(text: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    for doc in docs:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "StreamScavenger"
        assert directive["Dimensions"] == [["FunctionName"]]
        assert {m["Name"] for m in directive["Metrics"]} == set(METRICS)
        assert all(isinstance(doc[name], int | float) for name in METRICS)
    return docs


@pytest.mark.ddb
def test_emf_counts_match_what_happened(
    ddb: Any, make_table: Any, ddb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": f"k{i}"} for i in range(60)])
    records = [record("INSERT", {"pk": f"k{i % 50}"}) for i in range(70)]  # 20 duplicates
    records += [
        record("MODIFY", {"pk": "k55"}),
        record("INSERT", {"nope": "x"}),
    ]  # skipped, unmappable
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"})
    with FaultProxy(ddb_local.endpoint_url, first(2, Fault.error("ThrottlingException"))) as proxy:
        client = make_client(
            config,
            endpoint_url=proxy.url,
            **LOCAL_CLIENT_SETTINGS,
        )
        capsys.readouterr()
        Scavenger(config, client, sleep=lambda s: None).handle(event(*records), Context())
        requests = proxy.counts.operations["BatchWriteItem"]

    (doc,) = emf_lines(capsys.readouterr().out)
    gone = 60 - len(scan_keys(ddb, table, ["pk"]))
    assert (
        doc["RecordsReceived"],
        doc["RecordsMatched"],
        doc["RecordsSkipped"],
        doc["UnmappableRecords"],
    ) == (72, 70, 1, 1)
    assert (doc["DuplicateKeys"], doc["KeysDeleted"], doc["RecordsReported"]) == (20, gone, 0)
    assert gone == 50
    assert (doc["BatchWriteRequests"], doc["Throttles"], doc["Retries"]) == (requests, 2, 2)
    assert doc["ConsumedWriteCapacity"] > 0 and doc["BatchLatency"] > 0
    assert doc["FunctionName"] == "local"


@pytest.mark.ddb
def test_logs_carry_no_item_values_unless_asked(
    ddb: Any, make_table: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream_scavenger.runtime.scavenger import handler as handler_module

    table = make_table({"pk": "S"})
    secret = "customer-4711-secret"
    batch = event(record("INSERT", {"pk": secret}), record("INSERT", {"other": secret}))
    quiet = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"})
    capfd.readouterr()
    Scavenger(quiet, ddb).handle(batch, Context())
    out = capfd.readouterr()
    assert secret not in out.out + out.err
    summaries = [json.loads(line) for line in out.err.splitlines() if '"scavenged"' in line]
    assert len(summaries) == 1 and summaries[0]["summary"]["matched"] == 1

    monkeypatch.setattr(handler_module.log, "level", 10)  # DEBUG, as log_level="DEBUG" sets it
    loud = ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, log_items=True)
    Scavenger(loud, ddb).handle(batch, Context())
    assert re.search(secret, capfd.readouterr().err)
