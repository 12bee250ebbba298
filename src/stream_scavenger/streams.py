"""The source table's stream: which view type is needed, enabling it, its ARN, its check."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsii
from aws_cdk import IAnyProducer, IResolveContext, Lazy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct, IValidation

from .events import EventName
from .filters import images_in_filters
from .runtime.scavenger.config import template_attributes
from .tables import KeySchema, declared_property, stream_view_type_of, table_resource
from .targets import ResolvedTarget
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


def images_read(
    targets: Sequence[ResolvedTarget],
    source_schema: KeySchema | None,
    patterns: Sequence[Mapping[str, Any]],
) -> frozenset[str]:
    """Every image a target or a filter pattern reads."""
    filter_images = images_in_filters(patterns)
    return frozenset().union(
        *(
            required_images(t.key_mapping, source_schema, t.event_names, filter_images)
            for t in targets
        )
    )


def smallest_view_type(images: frozenset[str]) -> dynamodb.StreamViewType:
    """The smallest stream view type that carries ``images``."""
    for name, covered in _COVERS.items():
        if images <= covered:
            return dynamodb.StreamViewType[name]
    raise AssertionError(images)  # pragma: no cover - NEW_AND_OLD_IMAGES covers everything


def _too_small(view: str | None, images: frozenset[str]) -> str | None:
    """Why a stream of view type ``view`` cannot feed the scavenger, or None when it can."""
    if view is None:
        return (
            "source_table has no stream at synthesis: something removed the stream the "
            f"scavenger enabled (it needs {smallest_view_type(images).value} or more)"
        )
    if view in _COVERS and images <= _COVERS[view]:
        return None
    return (
        f"source_table's stream is {view}, but the scavenger reads "
        f"{', '.join(sorted(images))} from it: it needs {smallest_view_type(images).value} "
        "(or NEW_AND_OLD_IMAGES). Change the table's stream view type, or map only key "
        "attributes and drop filters on images."
    )


@jsii.implements(IAnyProducer)
class _DeclaredOrSmallest:
    """The stream the table declares when synthesized (a ``TableV2`` given replicas after the
    scavenger streams NEW_AND_OLD_IMAGES), else the smallest the scavenger needs."""

    def __init__(self, declared: Any, smallest: dynamodb.StreamViewType) -> None:
        self._declared = declared
        self._smallest = {"streamViewType": smallest.value}

    def produce(self, context: IResolveContext) -> Any:
        declared = None if self._declared is None else context.resolve(self._declared)
        return declared or self._smallest


@jsii.implements(IValidation)
class SourceStream:
    """The stream the scavenger ``scope`` reads: its ARN, and its view type as synthesized.

    If this app owns the table and it declares no stream yet, enables one, of the smallest
    view type that carries ``images`` unless the table declares its own by synthesis. Its
    :meth:`validate` (a node validation of the construct) checks at synthesis that the stream
    the template declares carries ``images``, whatever was added to the table after the
    scavenger. An imported table must carry its stream ARN; its view type is not inspectable.
    """

    def __init__(self, scope: Construct, table: dynamodb.ITable, images: frozenset[str]) -> None:
        self._images = images
        self._resource = table_resource(table)
        if self._resource is None:
            if not table.table_stream_arn:
                raise ScavengerConfigError(
                    "source_table is an imported table without a stream ARN: import it with "
                    "Table.from_table_attributes(..., table_stream_arn=...) "
                    "(or TableV2.from_table_attributes)"
                )
            self.arn: str = table.table_stream_arn
            return
        declared = stream_view_type_of(self._resource)
        if declared is None:
            self._resource.stream_specification = Lazy.uncached_any(
                _DeclaredOrSmallest(
                    declared_property(self._resource, "streamSpecification"),
                    smallest_view_type(images),
                )
            )
        else:
            problem = _too_small(declared, images)
            if problem:  # known now, so said now; validate() repeats it at synthesis
                raise ScavengerConfigError(problem)
        self.arn = self._resource.attr_stream_arn
        scope.node.add_validation(self)

    @property
    def view_type(self) -> dynamodb.StreamViewType | None:
        """The view type the template declares; None for an imported table."""
        if self._resource is None:
            return None
        view = stream_view_type_of(self._resource)
        return dynamodb.StreamViewType(view) if view in _COVERS else None

    def validate(self) -> list[str]:
        """At synthesis: what is wrong with the stream the template declares (if anything)."""
        if self._resource is None:
            return []
        problem = _too_small(stream_view_type_of(self._resource), self._images)
        return [problem] if problem else []
