"""The stream events a scavenger can act on."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .runtime.scavenger.config import IMAGE_FOR_EVENT
from .validation import ScavengerConfigError


class EventName(enum.StrEnum):
    """A DynamoDB stream event name. Plain strings with the same value are accepted too."""

    INSERT = "INSERT"
    """An item was created: read from the new image."""
    MODIFY = "MODIFY"
    """An item was changed: read from the new image."""
    REMOVE = "REMOVE"
    """An item was deleted: read from the old image."""

    @property
    def image(self) -> str:
        """The stream image the event carries its item in."""
        return IMAGE_FOR_EVENT[self.value]


def stream_order(names: Iterable[EventName]) -> list[EventName]:
    """The distinct ``names``, in the order of :class:`EventName` (INSERT, MODIFY, REMOVE)."""
    chosen = set(names)
    return [e for e in EventName if e in chosen]


def normalize_event_names(event_names: Iterable[EventName | str] | None) -> list[EventName]:
    """Validated, de-duplicated event names in stream order; ``None`` means INSERT only."""
    if event_names is None:
        return [EventName.INSERT]
    if isinstance(event_names, str):
        raise ScavengerConfigError("event_names must be a list, e.g. ['INSERT'], not a string")
    chosen = set()
    for name in event_names:
        try:
            chosen.add(EventName(getattr(name, "value", name)))
        except ValueError:
            raise ScavengerConfigError(
                f"event_names: unknown event {name!r}; allowed: INSERT, MODIFY, REMOVE"
            ) from None
    if not chosen:
        raise ScavengerConfigError("event_names must name at least one of INSERT, MODIFY, REMOVE")
    return stream_order(chosen)
