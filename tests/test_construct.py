"""StreamScavenger as synthesized: streams, options, validation, permissions, resources."""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from stream_scavenger import EventName, ScavengerConfigError, StreamScavenger

S, N, B = (
    dynamodb.AttributeType.STRING,
    dynamodb.AttributeType.NUMBER,
    dynamodb.AttributeType.BINARY,
)
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/ext/stream/2026-01-01T00:00:00.000"


def stack() -> cdk.Stack:
    return cdk.Stack(
        cdk.App(), "Test", env=cdk.Environment(account="123456789012", region="us-east-1")
    )


def table(
    scope: cdk.Stack, name: str, pk: str = "messageId", sk: str | None = "createdAt", **kw: Any
) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        name,
        partition_key=dynamodb.Attribute(name=pk, type=S),
        sort_key=dynamodb.Attribute(name=sk, type=N) if sk else None,
        **kw,
    )


def build(**kw: Any) -> tuple[cdk.Stack, StreamScavenger, Template]:
    st = kw.pop("scope", None) or stack()
    source = kw.pop("source_table", None) or table(st, "Messages")
    target = kw.pop("target_table", None) or table(st, "Staging")
    scav = StreamScavenger(st, "Scavenger", source_table=source, target_table=target, **kw)
    return st, scav, Template.from_stack(st)


def mapping_props(template: Template) -> dict[str, Any]:
    (esm,) = template.find_resources("AWS::Lambda::EventSourceMapping").values()
    return esm["Properties"]


def stream_view(template: Template, logical_prefix: str = "Messages") -> str | None:
    for logical_id, res in template.find_resources("AWS::DynamoDB::Table").items():
        if logical_id.startswith(logical_prefix):
            return res["Properties"].get("StreamSpecification", {}).get("StreamViewType")
    raise AssertionError(logical_prefix)


def policy_statements(template: Template) -> list[dict[str, Any]]:
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


# ---- streams -------------------------------------------------------------------------------


def test_article_setup_enables_a_keys_only_stream() -> None:
    _, scav, template = build()
    assert stream_view(template) == "KEYS_ONLY"
    assert scav.stream_view_type == dynamodb.StreamViewType.KEYS_ONLY
    arn = mapping_props(template)["EventSourceArn"]["Fn::GetAtt"]
    assert arn[0].startswith("Messages") and arn[1] == "StreamArn"


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["INSERT"], "NEW_IMAGE"),
        (["MODIFY"], "NEW_IMAGE"),
        (["REMOVE"], "OLD_IMAGE"),
        (["INSERT", "REMOVE"], "NEW_AND_OLD_IMAGES"),
        ([EventName.MODIFY, EventName.REMOVE], "NEW_AND_OLD_IMAGES"),
    ],
)
def test_non_key_source_attribute_needs_the_image_its_events_carry(
    events: list[Any], expected: str
) -> None:
    st = stack()
    target = table(st, "Staging", pk="stagingId", sk=None)
    _, scav, template = build(
        scope=st, target_table=target, key_mapping={"stagingId": "stagingRef"}, event_names=events
    )
    assert stream_view(template) == expected
    assert scav.stream_view_type == dynamodb.StreamViewType(expected)


def test_key_attribute_renamed_still_needs_only_keys() -> None:
    st = stack()
    target = table(st, "Staging", pk="id", sk=None)
    _, _, template = build(
        scope=st, target_table=target, key_mapping={"id": "messageId"}, event_names=["REMOVE"]
    )
    assert stream_view(template) == "KEYS_ONLY"


def test_filter_on_new_image_widens_the_view_type() -> None:
    _, _, template = build(filters=[{"dynamodb": {"NewImage": {"status": {"S": ["PROCESSED"]}}}}])
    assert stream_view(template) == "NEW_IMAGE"


def test_existing_stream_is_used_as_it_is() -> None:
    st = stack()
    source = table(st, "Messages", stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES)
    _, scav, template = build(scope=st, source_table=source)
    assert stream_view(template) == "NEW_AND_OLD_IMAGES"
    assert scav.stream_view_type == dynamodb.StreamViewType.NEW_AND_OLD_IMAGES


def test_existing_stream_too_small_is_an_error_naming_the_view_type() -> None:
    st = stack()
    source = table(st, "Messages", stream=dynamodb.StreamViewType.KEYS_ONLY)
    target = table(st, "Staging", pk="stagingId", sk=None)
    with pytest.raises(ScavengerConfigError, match="stream is KEYS_ONLY.*needs NEW_IMAGE"):
        build(scope=st, source_table=source, target_table=target, key_mapping={"stagingId": "ref"})


def test_existing_stream_lacking_a_filtered_image_is_an_error() -> None:
    st = stack()
    source = table(st, "Messages", stream=dynamodb.StreamViewType.NEW_IMAGE)
    with pytest.raises(ScavengerConfigError, match="needs OLD_IMAGE"):
        build(
            scope=st, source_table=source, filters=[{"dynamodb": {"OldImage": {"s": {"S": ["x"]}}}}]
        )


def test_table_v2_without_stream_gets_one() -> None:
    st = stack()
    source = dynamodb.TableV2(
        st,
        "Messages",
        partition_key=dynamodb.Attribute(name="messageId", type=S),
        sort_key=dynamodb.Attribute(name="createdAt", type=N),
    )
    target = dynamodb.TableV2(
        st,
        "Staging",
        partition_key=dynamodb.Attribute(name="messageId", type=S),
        sort_key=dynamodb.Attribute(name="createdAt", type=N),
    )
    _, scav, template = build(scope=st, source_table=source, target_table=target)
    (global_table,) = [
        r
        for k, r in template.find_resources("AWS::DynamoDB::GlobalTable").items()
        if k.startswith("Messages")
    ]
    assert global_table["Properties"]["StreamSpecification"] == {"StreamViewType": "KEYS_ONLY"}
    assert scav.stream_view_type == dynamodb.StreamViewType.KEYS_ONLY
    assert mapping_props(template)["EventSourceArn"]["Fn::GetAtt"][1] == "StreamArn"


def test_table_v2_with_a_too_small_stream_is_an_error() -> None:
    st = stack()
    source = dynamodb.TableV2(
        st,
        "Messages",
        partition_key=dynamodb.Attribute(name="id", type=S),
        dynamo_stream=dynamodb.StreamViewType.OLD_IMAGE,
    )
    target = table(st, "Staging", pk="stagingId", sk=None)
    with pytest.raises(ScavengerConfigError, match="stream is OLD_IMAGE.*needs NEW_IMAGE"):
        build(scope=st, source_table=source, target_table=target, key_mapping={"stagingId": "ref"})


def test_table_v2_replicas_added_after_the_scavenger_stream_new_and_old_images() -> None:
    st = stack()
    source = dynamodb.TableV2(
        st, "Messages", partition_key=dynamodb.Attribute(name="messageId", type=S)
    )
    target = table(st, "Staging", sk=None)
    scav = StreamScavenger(st, "Scavenger", source_table=source, target_table=target)
    assert scav.stream_view_type == dynamodb.StreamViewType.KEYS_ONLY
    source.add_replica(region="us-west-2")  # a replica needs NEW_AND_OLD_IMAGES
    (global_table,) = Template.from_stack(st).find_resources("AWS::DynamoDB::GlobalTable").values()
    assert global_table["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    }
    assert scav.stream_view_type == dynamodb.StreamViewType.NEW_AND_OLD_IMAGES


def test_a_stream_made_too_small_after_the_scavenger_fails_synthesis_naming_it() -> None:
    st = stack()
    source = table(st, "Messages", sk=None)
    target = table(st, "Staging", pk="stagingId", sk=None)
    StreamScavenger(
        st, "Scavenger", source_table=source, target_table=target, key_mapping={"stagingId": "ref"}
    )
    resource = source.node.default_child
    assert isinstance(resource, dynamodb.CfnTable)
    resource.stream_specification = dynamodb.CfnTable.StreamSpecificationProperty(
        stream_view_type="KEYS_ONLY"
    )
    with pytest.raises(
        RuntimeError, match=r"\[Test/Scavenger\] source_table's stream is KEYS_ONLY.*NEW_IMAGE"
    ):
        Template.from_stack(st)


def test_imported_source_with_stream_arn() -> None:
    st = stack()
    source = dynamodb.Table.from_table_attributes(
        st, "Ext", table_name="ext", table_stream_arn=STREAM_ARN
    )
    _, scav, template = build(scope=st, source_table=source)
    assert mapping_props(template)["EventSourceArn"] == STREAM_ARN
    assert scav.stream_view_type is None
    assert {
        "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
        "Effect": "Allow",
        "Resource": STREAM_ARN,
    } in policy_statements(template)


def test_imported_source_without_stream_arn_says_how_to_pass_one() -> None:
    st = stack()
    source = dynamodb.Table.from_table_name(st, "Ext", "ext")
    with pytest.raises(ScavengerConfigError, match="table_stream_arn="):
        build(scope=st, source_table=source)


# ---- key mapping ---------------------------------------------------------------------------


def test_imported_target_needs_key_mapping() -> None:
    st = stack()
    target = dynamodb.Table.from_table_name(st, "ExtTarget", "staging")
    with pytest.raises(ScavengerConfigError, match="key_mapping is required"):
        build(scope=st, target_table=target)


def test_imported_target_with_key_mapping_synthesizes() -> None:
    st = stack()
    target = dynamodb.Table.from_table_name(st, "ExtTarget", "staging")
    _, scav, template = build(scope=st, target_table=target, key_mapping={"id": "messageId"})
    env = function_env(template)
    assert env["SCAVENGER_TARGET_TABLE"] == "staging"
    (config,) = json.loads(env["SCAVENGER_CONFIG"])["targets"]
    assert config["key_mapping"] == {"id": "messageId"} and config["key_types"] == {}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"messageId": "messageId"}, r"misses the target key attributes \['createdAt'\]"),
        (
            {"messageId": "a", "createdAt": "b", "extra": "c"},
            r"names \['extra'\], which are not key attributes",
        ),
        ({}, "non-empty dict"),
        ({"messageId": "", "createdAt": "b"}, "non-empty strings"),
    ],
)
def test_bad_key_mapping_is_named(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ScavengerConfigError, match=message):
        build(key_mapping=mapping)


def function_env(template: Template) -> dict[str, Any]:
    (fn,) = template.find_resources("AWS::Lambda::Function").values()
    return fn["Properties"]["Environment"]["Variables"]


def test_config_contract_in_the_environment() -> None:
    _, _, template = build(event_names=["REMOVE", "INSERT"])
    env = function_env(template)
    assert env["SCAVENGER_TARGET_TABLE"]["Ref"].startswith("Staging")
    assert json.loads(env["SCAVENGER_CONFIG"]) == {
        "version": 2,
        "targets": [
            {
                "key_mapping": {"messageId": "messageId", "createdAt": "createdAt"},
                "key_types": {"messageId": "S", "createdAt": "N"},
                "sort_key": "createdAt",
                "event_names": ["INSERT", "REMOVE"],
            }
        ],
        "max_concurrency": 8,
        "max_attempts": 8,
        "dry_run": False,
    }


# ---- event source mapping options ----------------------------------------------------------


def test_defaults_reach_the_mapping() -> None:
    _, scav, template = build()
    props = mapping_props(template)
    assert props["BatchSize"] == 100
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["ParallelizationFactor"] == 1
    assert props["MaximumRetryAttempts"] == 10
    assert props["MaximumRecordAgeInSeconds"] == 3600
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "MaximumBatchingWindowInSeconds" not in props
    assert props["FilterCriteria"] == {
        "Filters": [{"Pattern": json.dumps({"eventName": ["INSERT"]}, separators=(",", ":"))}]
    }
    assert props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0].startswith(
        "ScavengerDeadLetterQueue"
    )
    assert scav.dead_letter_queue is not None


def test_every_option_reaches_the_mapping() -> None:
    st = stack()
    queue = sqs.Queue(st, "MyDlq")
    _, scav, template = build(
        scope=st,
        batch_size=500,
        max_batching_window=cdk.Duration.seconds(20),
        parallelization_factor=4,
        starting_position=lambda_.StartingPosition.LATEST,
        retry_attempts=3,
        max_record_age=cdk.Duration.minutes(30),
        bisect_batch_on_error=False,
        on_failure=sources.SqsDlq(queue),
    )
    props = mapping_props(template)
    assert (
        props["BatchSize"],
        props["MaximumBatchingWindowInSeconds"],
        props["ParallelizationFactor"],
    ) == (500, 20, 4)
    assert (
        props["StartingPosition"],
        props["MaximumRetryAttempts"],
        props["MaximumRecordAgeInSeconds"],
    ) == ("LATEST", 3, 1800)
    assert props["BisectBatchOnFunctionError"] is False
    assert props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0].startswith(
        "MyDlq"
    )
    assert scav.dead_letter_queue is None
    assert len(template.find_resources("AWS::SQS::Queue")) == 1


def test_user_filters_are_merged_with_the_event_names() -> None:
    status = {"dynamodb": {"NewImage": {"status": {"S": ["PROCESSED"]}}}}
    narrowing = {
        "eventName": ["MODIFY", "REMOVE"],
        "dynamodb": {"Keys": {"messageId": {"S": [{"prefix": "a"}]}}},
    }
    _, _, template = build(
        event_names=["INSERT", "MODIFY"], filters=[status, lambda_.FilterCriteria.filter(narrowing)]
    )
    patterns = [
        json.loads(f["Pattern"]) for f in mapping_props(template)["FilterCriteria"]["Filters"]
    ]
    assert patterns == [
        {**status, "eventName": ["INSERT", "MODIFY"]},
        {**narrowing, "eventName": ["MODIFY"]},
    ]


def test_filter_selecting_no_chosen_event_is_an_error() -> None:
    with pytest.raises(
        ScavengerConfigError, match=r"filters\[0\].eventName \['REMOVE'\] selects none"
    ):
        build(filters=[{"eventName": ["REMOVE"]}])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be an integer in 1..10000, got 0"),
        ("batch_size", 10001, "batch_size must be an integer in 1..10000"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("parallelization_factor", 11, "parallelization_factor must be an integer in 1..10"),
        ("retry_attempts", -1, "retry_attempts must be an integer in 0..10000"),
        (
            "max_batching_window",
            cdk.Duration.seconds(301),
            "max_batching_window must be 0..300 seconds",
        ),
        ("max_record_age", cdk.Duration.seconds(59), "max_record_age must be 60..604800 seconds"),
        ("max_record_age", cdk.Duration.days(8), "max_record_age must be 60..604800 seconds"),
        ("memory_size", 64, "memory_size must be an integer in 128..10240"),
        ("timeout", cdk.Duration.minutes(16), "timeout must be 5..900 seconds"),
        (
            "event_names",
            ["INSERT", "UPSERT"],
            "event_names: unknown event 'UPSERT'; allowed: INSERT, MODIFY, REMOVE",
        ),
        ("event_names", [], "event_names must name at least one"),
        ("event_names", "INSERT", "event_names must be a list"),
        ("starting_position", lambda_.StartingPosition.AT_TIMESTAMP, "starting_position must be"),
        ("log_level", "LOUD", "log_level must be DEBUG, INFO, WARN or ERROR"),
        ("log_item_keys", True, "log_item_keys=True logs keys at DEBUG level: set log_level="),
        ("filters", [{}], "filters[0] must be a non-empty event pattern"),
        ("filters", [{"x": ["y"]}] * 11, "Lambda allows 1..10"),
    ],
)
def test_out_of_range_options_name_the_option_and_range(
    option: str, value: Any, message: str
) -> None:
    with pytest.raises(ScavengerConfigError, match=re.escape(message)):
        build(**{option: value})


def test_unresolved_tokens_pass_validation() -> None:
    st = stack()
    size = cdk.CfnParameter(st, "BatchSize", type="Number").value_as_number
    _, _, template = build(
        scope=st,
        batch_size=size,
        max_batching_window=cdk.Duration.seconds(cdk.Token.as_number(cdk.Fn.ref("BatchSize"))),
    )
    assert mapping_props(template)["BatchSize"] == {"Ref": "BatchSize"}


def test_errors_name_the_construct_among_several() -> None:
    st = stack()
    build(scope=st)
    source, target = table(st, "Orders"), table(st, "OrderCopies")
    with pytest.raises(ScavengerConfigError) as raised:
        StreamScavenger(st, "Second", source_table=source, target_table=target, batch_size=0)
    assert str(raised.value) == "Test/Second: batch_size must be an integer in 1..10000, got 0"
    assert raised.value.path == "Test/Second"
    with pytest.raises(ScavengerConfigError, match=r"^Test/Third: key_mapping misses"):
        StreamScavenger(
            st, "Third", source_table=source, target_table=target, key_mapping={"messageId": "x"}
        )


def test_max_record_age_from_a_parameter_reaches_the_mapping() -> None:
    st = stack()
    age = cdk.CfnParameter(st, "MaxRecordAge", type="Number").value_as_number
    timeout = cdk.CfnParameter(st, "Timeout", type="Number").value_as_number
    _, _, template = build(
        scope=st, max_record_age=cdk.Duration.seconds(age), timeout=cdk.Duration.seconds(timeout)
    )
    assert mapping_props(template)["MaximumRecordAgeInSeconds"] == {"Ref": "MaxRecordAge"}
    template.has_resource_properties("AWS::Lambda::Function", {"Timeout": {"Ref": "Timeout"}})


@pytest.mark.parametrize("option", ["max_batching_window", "max_record_age", "timeout"])
def test_a_duration_token_must_be_in_seconds(option: str) -> None:
    st = stack()
    minutes = cdk.CfnParameter(st, "Minutes", type="Number").value_as_number
    with pytest.raises(
        ScavengerConfigError,
        match=rf"^Test/Scavenger: {option} comes from a token, so it must be "
        r"Duration\.seconds\(<token>\) \(\d+\.\.\d+ seconds\): .* from minutes",
    ):
        build(scope=st, **{option: cdk.Duration.minutes(minutes)})


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "max_batching_window",
            cdk.Duration.millis(500),
            "max_batching_window must be whole seconds, 0..300 seconds, got 0.5 seconds",
        ),
        (
            "max_batching_window",
            cdk.Duration.seconds(1.5),
            "max_batching_window must be whole seconds, 0..300 seconds, got 1.5 seconds",
        ),
        (
            "max_record_age",
            cdk.Duration.millis(90_500),
            "max_record_age must be whole seconds, 60..604800 seconds, got 90.5 seconds",
        ),
        (
            "timeout",
            cdk.Duration.millis(5_500),
            "timeout must be whole seconds, 5..900 seconds, got 5.5 seconds",
        ),
    ],
)
def test_durations_must_be_whole_seconds(option: str, value: Any, message: str) -> None:
    with pytest.raises(ScavengerConfigError, match="^" + re.escape(f"Test/Scavenger: {message}")):
        build(**{option: value})


# ---- permissions ---------------------------------------------------------------------------


def test_policy_is_least_privilege() -> None:
    _, _, template = build()
    statements = policy_statements(template)
    actions = {
        a
        for s in statements
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert actions == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "dynamodb:BatchWriteItem",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert wildcard == [{"Action": "dynamodb:ListStreams", "Effect": "Allow", "Resource": "*"}]
    (write,) = [s for s in statements if s["Action"] == "dynamodb:BatchWriteItem"]
    assert write["Resource"]["Fn::GetAtt"][0].startswith("Staging")
    (stream,) = [s for s in statements if "dynamodb:GetRecords" in s["Action"]]
    assert (
        stream["Resource"]["Fn::GetAtt"][0].startswith("Messages")
        and stream["Resource"]["Fn::GetAtt"][1] == "StreamArn"
    )
    template.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    (role,) = template.find_resources("AWS::IAM::Role").values()
    assert "ManagedPolicyArns" not in role["Properties"]


def test_customer_managed_keys_are_granted() -> None:
    st = stack()
    source_key, target_key = kms.Key(st, "SourceKey"), kms.Key(st, "TargetKey")
    source = table(
        st,
        "Messages",
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=source_key,
    )
    target = table(
        st,
        "Staging",
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=target_key,
    )
    _, _, template = build(scope=st, source_table=source, target_table=target)
    kms_statements = {
        s["Resource"]["Fn::GetAtt"][0][:9]: s["Action"]
        for s in policy_statements(template)
        if "kms:Decrypt" in s["Action"]
    }
    assert kms_statements["SourceKey"] == "kms:Decrypt"
    assert set(kms_statements["TargetKey"]) == {
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
    }


def test_mapping_waits_for_the_policy() -> None:
    _, _, template = build()
    (esm,) = template.find_resources("AWS::Lambda::EventSourceMapping").values()
    (policy_id,) = template.find_resources("AWS::IAM::Policy")
    assert policy_id in esm["DependsOn"]


# ---- function, logs, queue -----------------------------------------------------------------


def test_function_defaults() -> None:
    _, _, template = build()
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Handler": "scavenger.handler.handler",
            "MemorySize": 256,
            "Timeout": 60,
            "LoggingConfig": Match.object_like(
                {"LogFormat": "JSON", "ApplicationLogLevel": "INFO"}
            ),
        },
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


def test_function_overrides() -> None:
    _, _, template = build(
        memory_size=512, timeout=cdk.Duration.seconds(120), log_level="debug", log_item_keys=True
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "MemorySize": 512,
            "Timeout": 120,
            "LoggingConfig": Match.object_like({"ApplicationLogLevel": "DEBUG"}),
            "Environment": {"Variables": Match.object_like({"SCAVENGER_LOG_ITEMS": "true"})},
        },
    )


def test_dead_letter_queue_is_encrypted_tls_only_and_keeps_14_days() -> None:
    _, _, template = build()
    template.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600}
    )
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sqs:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_asset_hash_ignores_bytecode_caches() -> None:
    from stream_scavenger.construct import RUNTIME_ASSET_DIR

    def code_key() -> str:
        _, _, template = build()
        (fn,) = template.find_resources("AWS::Lambda::Function").values()
        return str(fn["Properties"]["Code"]["S3Key"])

    cache = RUNTIME_ASSET_DIR / "scavenger" / "__pycache__"
    cache.mkdir(exist_ok=True)
    stray = cache / "stray.cpython-311.pyc"
    before = code_key()
    stray.write_bytes(b"not part of the asset")
    try:
        assert code_key() == before
    finally:
        stray.unlink()
