"""What the construct can learn about a table at synth time.

A ``Table`` or ``TableV2`` of this app carries its CloudFormation resource;
its properties are read from there (``TableV2``'s own getters cannot be read
through jsii). An imported table carries only names and ARNs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Stack, Token
from aws_cdk import aws_dynamodb as dynamodb


@dataclass(frozen=True)
class KeySchema:
    """A table's primary key: attribute names and their DynamoDB types."""

    partition_key: str
    sort_key: str | None
    types: dict[str, str]

    @property
    def attributes(self) -> list[str]:
        """Key attribute names, partition key first."""
        return [self.partition_key] + ([self.sort_key] if self.sort_key else [])


def table_resource(table: dynamodb.ITable) -> dynamodb.CfnTable | dynamodb.CfnGlobalTable | None:
    """The table's CloudFormation resource when it belongs to this app, else None."""
    child = table.node.default_child
    if isinstance(child, dynamodb.CfnTable | dynamodb.CfnGlobalTable):
        return child
    return None


def declared_property(resource: Any, name: str) -> Any:
    """A CloudFormation property as set, tokens unresolved (jsii cannot read every typed
    getter: ``TableV2``'s lazy stream specification fails to serialize)."""
    return resource._cfn_properties.get(name)


def _resolved_property(resource: Any, name: str) -> Any:
    value = declared_property(resource, name)
    return None if value is None else Stack.of(resource).resolve(value)


def key_schema_of(table: dynamodb.ITable) -> KeySchema | None:
    """The table's key schema, or None when it cannot be known (imported, or tokens)."""
    resource = table_resource(table)
    if resource is None:
        return None
    schema = _resolved_property(resource, "keySchema")
    definitions = _resolved_property(resource, "attributeDefinitions")
    if not isinstance(schema, list) or not isinstance(definitions, list):
        return None
    types = {d["attributeName"]: d["attributeType"] for d in definitions}
    roles = {k["keyType"]: k["attributeName"] for k in schema}
    if "HASH" not in roles or any(Token.is_unresolved(n) for n in roles.values()):
        return None
    names = [roles["HASH"]] + ([roles["RANGE"]] if "RANGE" in roles else [])
    return KeySchema(
        partition_key=roles["HASH"],
        sort_key=roles.get("RANGE"),
        types={name: types[name] for name in names},
    )


def stream_view_type_of(resource: dynamodb.CfnTable | dynamodb.CfnGlobalTable) -> str | None:
    """The view type of the stream the resource already declares, or None."""
    spec = _resolved_property(resource, "streamSpecification")
    if isinstance(spec, dict):
        view = spec.get("streamViewType")
        return view if isinstance(view, str) else None
    return None
