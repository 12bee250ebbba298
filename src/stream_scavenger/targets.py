"""The tables a scavenger deletes from: one (``target_table=``) or several (``targets=``).

DynamoDB Streams throttles when more than two readers poll one shard, so a
second scavenger on the same stream is not an option; one function serves
every target instead, each with its own key mapping and event names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Token
from aws_cdk import aws_dynamodb as dynamodb

from .events import EventName, normalize_event_names
from .filters import merge_filters
from .key_mapping import check_templates, resolve_key_mapping
from .runtime.scavenger.config import MAX_TARGETS, TargetConfig
from .tables import KeySchema, key_schema_of
from .validation import ScavengerConfigError


class ScavengerTarget:
    """One table to delete from, for ``StreamScavenger(..., targets=[...])``.

    ``ScavengerTarget(staging, key_mapping={"pk": "STAGING#{messageId}"})``.
    """

    def __init__(
        self,
        table: dynamodb.ITable,
        *,
        key_mapping: Mapping[str, str] | None = None,
        event_names: Sequence[EventName | str] | None = None,
    ) -> None:
        """Describe one target.

        :param table: Table whose items are deleted.
        :param key_mapping: As ``StreamScavenger``'s ``key_mapping``, for this table.
            Default: same names as the table's key.
        :param event_names: Stream events that delete from this table. Default: the
            scavenger's ``event_names`` (INSERT unless set).
        """
        self.table = table
        self.key_mapping = key_mapping
        self.event_names = event_names

    def __repr__(self) -> str:
        return f"ScavengerTarget({self.table.node.path}, key_mapping={self.key_mapping!r})"


@dataclass(frozen=True)
class ResolvedTarget:
    """A target with its complete, validated key mapping and event names."""

    table: dynamodb.ITable
    key_mapping: dict[str, str]
    event_names: list[EventName]
    schema: KeySchema | None

    def config(self) -> TargetConfig:
        """This target's part of the runtime configuration."""
        return TargetConfig(
            table=self.table.table_name,
            key_mapping=self.key_mapping,
            event_names=frozenset(e.value for e in self.event_names),
            key_types=dict(self.schema.types) if self.schema else {},
            sort_key=self.schema.sort_key if self.schema else None,
        )


def resolve_targets(
    target_table: dynamodb.ITable | None,
    targets: Sequence[ScavengerTarget] | None,
    key_mapping: Mapping[str, str] | None,
    event_names: Sequence[EventName | str] | None,
    source_schema: KeySchema | None,
) -> list[ResolvedTarget]:
    """Validate either form and return the targets, each mapping checked against its table."""
    if target_table is not None and targets is not None:
        raise ScavengerConfigError("pass target_table or targets, not both")
    if target_table is not None:
        return [_resolve(target_table, key_mapping, event_names, None, source_schema)]
    if targets is None:
        raise ScavengerConfigError(
            "target_table is required (or targets=[ScavengerTarget(table, ...), ...])"
        )
    if isinstance(targets, str | Mapping) or not isinstance(targets, Sequence):
        raise ScavengerConfigError("targets must be a list of ScavengerTarget")
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise ScavengerConfigError(
            f"targets must hold 1..{MAX_TARGETS} ScavengerTarget, got {len(targets)}"
        )
    if key_mapping is not None:
        raise ScavengerConfigError(
            "key_mapping is per target with targets=: pass ScavengerTarget(table, key_mapping=...)"
        )
    resolved: list[ResolvedTarget] = []
    for index, target in enumerate(targets):
        where = f"targets[{index}]"
        if not isinstance(target, ScavengerTarget):
            raise ScavengerConfigError(
                f"{where} must be a ScavengerTarget, got {type(target).__name__}"
            )
        events = target.event_names if target.event_names is not None else event_names
        resolved.append(_resolve(target.table, target.key_mapping, events, where, source_schema))
        for other_index, other in enumerate(resolved[:-1]):
            if same_table(other.table, target.table):
                raise ScavengerConfigError(
                    f"{where} names the same table as targets[{other_index}]: each table can be "
                    "a target once (one key_mapping per table)"
                )
    return resolved


def filter_patterns(
    targets: Sequence[ResolvedTarget],
    event_names: Sequence[EventName],
    filters: Sequence[Any] | None,
) -> list[dict[str, Any]]:
    """The mapping's filter patterns: ``event_names`` (of all targets) merged into
    ``filters``, each target still reached by one of them."""
    patterns = merge_filters(event_names, filters)
    check_filters_reach(targets, patterns)
    return patterns


def check_filters_reach(
    targets: Sequence[ResolvedTarget], patterns: Sequence[Mapping[str, Any]]
) -> None:
    """Every target can still receive a record after the filters (merged with event names)."""
    passing = {name for pattern in patterns for name in pattern.get("eventName", [])}
    for index, target in enumerate(targets):
        events = [e.value for e in target.event_names]
        if not passing & set(events):
            raise ScavengerConfigError(
                f"filters let no {' or '.join(events)} record through, so targets[{index}] "
                "would never delete anything: widen the filters' eventName or drop that target"
            )


def _resolve(
    table: dynamodb.ITable,
    key_mapping: Mapping[str, str] | None,
    event_names: Sequence[EventName | str] | None,
    where: str | None,
    source_schema: KeySchema | None,
) -> ResolvedTarget:
    try:
        schema = key_schema_of(table)
        mapping = resolve_key_mapping(key_mapping, schema)
        check_templates(mapping, schema, source_schema)
        events = normalize_event_names(event_names)
    except ScavengerConfigError as err:
        if where is None:
            raise
        raise ScavengerConfigError(f"{where}: {err}") from None
    return ResolvedTarget(table, mapping, events, schema)


def same_table(a: dynamodb.ITable, b: dynamodb.ITable) -> bool:
    """The same construct, or two imports of one table name."""
    if a is b or a.node.path == b.node.path:
        return True
    names = (a.table_name, b.table_name)
    return not any(Token.is_unresolved(n) for n in names) and names[0] == names[1]
