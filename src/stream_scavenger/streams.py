"""The source table's stream: which view type is needed, enabling it, its ARN."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from aws_cdk import aws_dynamodb as dynamodb

from .events import EventName
from .runtime.scavenger.config import template_attributes
from .tables import KeySchema, stream_view_type_of, table_resource
from .validation import ScavengerConfigError

_COVERS = {
    "KEYS_ONLY": frozenset(),
    "NEW_IMAGE": frozenset({"NewImage"}),
    "OLD_IMAGE": frozenset({"OldImage"}),
    "NEW_AND_OLD_IMAGES": frozenset({"NewImage", "OldImage"}),
}


def required_images(
    key_mapping: Mapping[str, str],
    source_schema: KeySchema | None,
    event_names: Sequence[EventName],
    filter_images: Iterable[str] = (),
) -> frozenset[str]:
    """Images the stream must carry: one per selected event for each non-key source attribute."""
    source_keys = set(source_schema.attributes) if source_schema else set()
    needed = set(filter_images)
    read = {attr for source in key_mapping.values() for attr in template_attributes(source)}
    if read - source_keys:
        needed |= {event.image for event in event_names}
    return frozenset(needed)


def smallest_view_type(images: frozenset[str]) -> dynamodb.StreamViewType:
    """The smallest stream view type that carries ``images``."""
    for name, covered in _COVERS.items():
        if images <= covered:
            return dynamodb.StreamViewType[name]
    raise AssertionError(images)  # pragma: no cover - NEW_AND_OLD_IMAGES covers everything


def bind_stream(
    table: dynamodb.ITable, images: frozenset[str]
) -> tuple[str, dynamodb.StreamViewType | None]:
    """The source's stream ARN and view type, enabling the stream if this app owns the table.

    Returns a view type of None for an imported table, whose stream cannot be inspected.
    """
    resource = table_resource(table)
    if resource is None:
        if not table.table_stream_arn:
            raise ScavengerConfigError(
                "source_table is an imported table without a stream ARN: import it with "
                "Table.from_table_attributes(..., table_stream_arn=...) "
                "(or TableV2.from_table_attributes)"
            )
        return table.table_stream_arn, None
    existing = stream_view_type_of(resource)
    if existing is None:
        view = smallest_view_type(images)
        spec_type = (
            dynamodb.CfnTable.StreamSpecificationProperty
            if isinstance(resource, dynamodb.CfnTable)
            else dynamodb.CfnGlobalTable.StreamSpecificationProperty
        )
        resource.stream_specification = spec_type(stream_view_type=view.value)
        return resource.attr_stream_arn, view
    if existing not in _COVERS or not images <= _COVERS[existing]:
        raise ScavengerConfigError(
            f"source_table's stream is {existing}, but the scavenger reads "
            f"{', '.join(sorted(images))} from it: it needs {smallest_view_type(images).value} "
            "(or NEW_AND_OLD_IMAGES). Change the table's stream view type, or map only key "
            "attributes and drop filters on images."
        )
    return resource.attr_stream_arn, dynamodb.StreamViewType(existing)
