"""Single-table key templates: "STAGING#{messageId}" as a key_mapping value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk.assertions import Template

from stream_scavenger import ScavengerConfigError, StreamScavenger
from stream_scavenger.local.scenario import check_assembly
from stream_scavenger.runtime.scavenger.config import (
    ConfigError,
    Placeholder,
    ScavengerConfig,
    parse_template,
)
from stream_scavenger.runtime.scavenger.handler import Scavenger
from testkit.events import Context, event, record
from testkit.tables import CountingClient, put_items, scan_keys

S, N, B = (
    dynamodb.AttributeType.STRING,
    dynamodb.AttributeType.NUMBER,
    dynamodb.AttributeType.BINARY,
)


def single_table_stack(
    mapping: dict[str, str], source_key: dict[str, Any] | None = None, target_sk: Any = S
) -> tuple[cdk.App, cdk.Stack, StreamScavenger]:
    app = cdk.App()
    stack = cdk.Stack(app, "SingleTable")
    source_key = source_key or {
        "partition_key": dynamodb.Attribute(name="messageId", type=S),
        "sort_key": dynamodb.Attribute(name="createdAt", type=N),
    }
    messages = dynamodb.Table(stack, "Messages", **source_key)
    design = dynamodb.Table(
        stack,
        "Design",
        partition_key=dynamodb.Attribute(name="pk", type=S),
        sort_key=dynamodb.Attribute(name="sk", type=target_sk),
    )
    scavenger = StreamScavenger(
        stack, "Scavenger", source_table=messages, target_table=design, key_mapping=mapping
    )
    return app, stack, scavenger


# ---- grammar -------------------------------------------------------------------------------


def test_grammar_placeholders_and_literal_braces() -> None:
    assert parse_template("STAGING#{messageId}") == ("STAGING#", Placeholder("messageId"))
    assert parse_template("{{json}}:{a}{b}") == ("{json}:", Placeholder("a"), Placeholder("b"))


@pytest.mark.parametrize("bad", ["{", "}", "{}", "a{b", "a}b", "{a{b}"])
def test_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="literal brace"):
        parse_template(bad)


# ---- synth time ----------------------------------------------------------------------------


def test_a_template_of_key_attributes_keeps_the_stream_keys_only() -> None:
    _, stack, scavenger = single_table_stack({"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"})
    assert scavenger.stream_view_type == dynamodb.StreamViewType.KEYS_ONLY
    env = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    assert "STAGING#{messageId}" in str(env)


def test_a_placeholder_on_a_non_key_attribute_needs_the_image() -> None:
    _, _, scavenger = single_table_stack(
        {"pk": "STAGING#{messageId}", "sk": "MSG#{tenant}#{createdAt}"}
    )
    assert scavenger.stream_view_type == dynamodb.StreamViewType.NEW_IMAGE


@pytest.mark.parametrize(
    ("mapping", "kw", "message"),
    [
        ({"pk": "STAGING#{messageId", "sk": "createdAt"}, {}, "key_mapping['pk']: key template"),
        ({"pk": "STAGING#{{fixed}}", "sk": "x"}, {}, "has no {attribute} placeholder"),
        (
            {"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"},
            {"target_sk": N},
            "template, which produces a string, but the target key 'sk' is N",
        ),
        (
            {"pk": "STAGING#{blob}", "sk": "x"},
            {"source_key": {"partition_key": dynamodb.Attribute(name="blob", type=B)}},
            "binary values cannot be rendered",
        ),
    ],
)
def test_template_errors_at_synth_time(
    mapping: dict[str, str], kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScavengerConfigError, match=re.escape(message)):
        single_table_stack(mapping, **kw)


# ---- run time ------------------------------------------------------------------------------


@pytest.mark.ddb
def test_templates_render_numbers_as_dynamodb_stores_them(ddb: Any, make_table: Any) -> None:
    table = make_table({"pk": "S", "sk": "S"})
    put_items(
        ddb,
        table,
        [
            {"pk": "STAGING#m1", "sk": "MSG#1500"},
            {"pk": "STAGING#m2", "sk": "MSG#0.5"},
            {"pk": "{m3}", "sk": "MSG#7"},
        ],
    )
    config = ScavengerConfig.single(
        target_table=table,
        key_mapping={"pk": "STAGING#{messageId}", "sk": "MSG#{createdAt}"},
        sort_key="sk",
    )
    other = ScavengerConfig.single(
        target_table=table,
        key_mapping={"pk": "{{{messageId}}}", "sk": "MSG#{createdAt}"},
        sort_key="sk",
    )
    client = CountingClient(ddb)
    batch = event(
        record("INSERT", {"messageId": {"S": "m1"}, "createdAt": {"N": "1.50E3"}}, raw=True),
        record(
            "INSERT", {"messageId": {"S": "m1"}, "createdAt": {"N": "1500"}}, raw=True
        ),  # same key
        record("INSERT", {"messageId": {"S": "m2"}, "createdAt": {"N": ".50"}}, raw=True),
    )

    assert Scavenger(config, client).handle(batch, Context()) == {"batchItemFailures": []}
    assert client.calls == [2]
    Scavenger(other, ddb).handle(
        event(record("INSERT", {"messageId": "m3", "createdAt": 7})), Context()
    )
    assert scan_keys(ddb, table, ["pk"]) == set()


@pytest.mark.ddb
def test_unrenderable_values_are_unmappable(ddb: Any, make_table: Any) -> None:
    table = make_table({"pk": "S"})
    config = ScavengerConfig.single(target_table=table, key_mapping={"pk": "X#{ref}"})
    scav = Scavenger(config, ddb)
    batch = event(
        record("INSERT", {"id": "1"}, new={"ref": b"binary"}),
        record("INSERT", {"id": "2"}, new={"ref": True}),
        record("INSERT", {"id": "3"}, new={"other": "x"}),
    )
    assert scav.handle(batch, Context()) == {"batchItemFailures": []}
    assert (scav.last_summary.unmappable, scav.last_summary.matched) == (3, 0)


@pytest.mark.ddb
def test_single_table_end_to_end_through_the_synthesized_asset(
    tmp_path: Path, ddb_local: Any, ddb: Any, ddb_streams: Any
) -> None:
    app, _, _ = single_table_stack({"pk": "STAGING#{messageId}", "sk": "MSG#{tenant}#{createdAt}"})
    assembly = app.synth().directory
    (report,) = check_assembly(assembly, ddb_local.endpoint_url, (ddb, ddb_streams), records=60)
    assert (report.deleted, report.still_there, report.unrelated_kept) == (60, 0, 60)
    assert report.ok
