"""Lambda event-filter patterns: the event-name selection merged into the user's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .events import EventName
from .runtime.scavenger.filtering import alternatives
from .validation import ScavengerConfigError

#: Lambda's hard limit on filter patterns per event source mapping (5 by default, raisable to 10).
MAX_FILTERS = 10
_IMAGES = ("NewImage", "OldImage")


def _pattern_body(index: int, pattern: Any) -> dict[str, Any]:
    """Accept a pattern dict, or what ``aws_lambda.FilterCriteria.filter()`` returns."""
    if (
        isinstance(pattern, Mapping)
        and set(pattern) == {"pattern"}
        and isinstance(pattern["pattern"], str)
    ):
        pattern = json.loads(pattern["pattern"])
    if not isinstance(pattern, Mapping) or not pattern:
        raise ScavengerConfigError(
            f"filters[{index}] must be a non-empty event pattern dict, "
            "e.g. {'dynamodb': {'NewImage': {'status': {'S': ['PROCESSED']}}}}"
        )
    return dict(pattern)


def merge_filters(
    event_names: Sequence[EventName], filters: Sequence[Any] | None
) -> list[dict[str, Any]]:
    """One pattern per user filter, each also requiring a selected event name.

    Lambda ORs separate patterns, so the event-name condition is merged into
    every pattern instead of being added as one more.
    """
    names = [e.value for e in event_names]
    if not filters:
        return [{"eventName": names}]
    if isinstance(filters, Mapping) or not isinstance(filters, Sequence):
        raise ScavengerConfigError("filters must be a list of event pattern dicts")
    if len(filters) > MAX_FILTERS:
        raise ScavengerConfigError(
            f"filters has {len(filters)} patterns; Lambda allows 1..{MAX_FILTERS} per mapping"
        )
    merged = []
    for index, raw in enumerate(filters):
        pattern = _pattern_body(index, raw)
        own = pattern.get("eventName")
        if own is None:
            pattern["eventName"] = names
        elif isinstance(own, list) and all(isinstance(n, str) for n in own):
            both = [n for n in names if n in own]
            if not both:
                raise ScavengerConfigError(
                    f"filters[{index}].eventName {own} selects none of event_names {names}"
                )
            pattern["eventName"] = both
        else:
            raise ScavengerConfigError(
                f"filters[{index}].eventName must be a list of event names; "
                "prefer the event_names option"
            )
        merged.append(pattern)
    return merged


def images_in_filters(patterns: Sequence[Mapping[str, Any]]) -> set[str]:
    """Which stream images (NewImage, OldImage) the patterns look at, in ``$or`` too."""
    used: set[str] = set()
    for pattern in patterns:
        for branch in alternatives(pattern):
            stream = branch.get("dynamodb")
            if isinstance(stream, Mapping):
                for part in alternatives(stream):
                    used |= {image for image in _IMAGES if image in part}
    return used
