"""What to do with one stream record: find the key it names in a target.

Everything here is pure: no I/O, no clock. For each target, a record either
maps to a :class:`TargetKey`, is skipped (the target does not act on its
event), or raises :class:`Unmappable` with a reason that names attributes,
never values.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from .config import (
    EVENT_NAMES,
    KEY_TYPES,
    Placeholder,
    TargetConfig,
    is_template,
    parse_template,
)

#: DynamoDB's limits on key attribute values, in bytes.
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
#: DynamoDB numbers: up to 38 significant digits, magnitude 1E-130 .. 9.9...9E+125.
MAX_NUMBER_DIGITS = 38
MIN_NUMBER_EXPONENT = -130
MAX_NUMBER_ADJUSTED_EXPONENT = 125

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_IMAGE_FOR_EVENT = {"INSERT": "NewImage", "MODIFY": "NewImage", "REMOVE": "OldImage"}

Identity = tuple[tuple[str, str, Any], ...]
"""Hashable form of a key; equal exactly when DynamoDB treats two keys as one item."""


class Unmappable(Exception):
    """The record can never yield a valid target key; retrying it cannot help."""


@dataclass(frozen=True)
class TargetKey:
    """A key to delete: its table, its identity (for de-duplication) and its request form."""

    table: str
    identity: Identity
    request: dict[str, dict[str, Any]]


def event_name_of(record: Any) -> str:
    """The record's event name: INSERT, MODIFY or REMOVE.

    Raises :class:`Unmappable` for what is not a DynamoDB stream record at all
    (a malformed record, another service's event, an unknown event name): those
    are reported in the logs, not skipped silently.
    """
    if not isinstance(record, Mapping):
        raise Unmappable(f"record is a {type(record).__name__}, not an object")
    source = record.get("eventSource", "aws:dynamodb")
    if source != "aws:dynamodb":
        raise Unmappable(f"record comes from {str(source)[:40]!r}, not a DynamoDB stream")
    name = record.get("eventName")
    if name not in EVENT_NAMES:
        raise Unmappable(f"eventName {str(name)[:20]!r} is not INSERT, MODIFY or REMOVE")
    return str(name)


def map_record(record: Mapping[str, Any], target: TargetConfig) -> TargetKey:
    """The key in ``target`` a selected record names, or :class:`Unmappable`."""
    stream = record.get("dynamodb")
    if not isinstance(stream, Mapping):
        raise Unmappable("record has no 'dynamodb' object")
    keys = stream.get("Keys")
    image = stream.get(_IMAGE_FOR_EVENT.get(str(record.get("eventName")), "NewImage"))
    request: dict[str, dict[str, Any]] = {}
    for target_attr, source in target.key_mapping.items():
        max_bytes = (
            MAX_SORT_KEY_BYTES if target_attr == target.sort_key else MAX_PARTITION_KEY_BYTES
        )
        if is_template(source):
            rendered = _render(_parsed(source), keys, image)
            request[target_attr] = {"S": _checked_string(rendered, f"template {source}", max_bytes)}
            continue
        value = _find(source, keys, image)
        if value is None:
            raise Unmappable(f"source attribute '{source}' is not in the record")
        request[target_attr] = _to_key_value(
            value, target.key_types.get(target_attr), source, max_bytes
        )
    return TargetKey(table=target.table, identity=identity_of(request), request=request)


@functools.lru_cache(maxsize=64)
def _parsed(template: str) -> tuple[str | Placeholder, ...]:
    return parse_template(template)


def _render(parts: tuple[str | Placeholder, ...], keys: Any, image: Any) -> str:
    """A key template filled with the record's values; numbers as DynamoDB stores them."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _find(part.attribute, keys, image)
        if value is None:
            raise Unmappable(f"source attribute '{part.attribute}' is not in the record")
        if len(value) != 1:
            raise Unmappable(f"source attribute '{part.attribute}' is not a single typed value")
        ((type_, raw),) = value.items()
        if type_ == "S" and isinstance(raw, str):
            out.append(raw)
        elif type_ == "N":
            out.append(_number_text(_checked_number(raw, part.attribute)))
        elif type_ == "B":
            raise Unmappable(
                f"source attribute '{part.attribute}' is binary; binary values cannot be "
                "rendered into a key template"
            )
        else:
            raise Unmappable(
                f"source attribute '{part.attribute}' is {type_}; templates take S or N"
            )
    return "".join(out)


def _number_text(number: str) -> str:
    """A DynamoDB number as DynamoDB stores it: no exponent, no insignificant zeros."""
    value = Decimal(number)
    if value.is_zero():
        return "0"
    with localcontext() as exact:
        exact.prec = 60  # above DynamoDB's 38 digits: normalize() must not round
        return format(value.normalize(), "f")


def identity_of(key: Mapping[str, Mapping[str, Any]]) -> Identity:
    """Identity of a key in request form (as sent to, or returned by, boto3)."""
    parts = []
    for attr in sorted(key):
        ((type_, value),) = key[attr].items()
        if type_ == "N":
            canonical: Any = Decimal(value)
        elif type_ == "B":
            canonical = bytes(value)
        else:
            canonical = value
        parts.append((attr, type_, canonical))
    return tuple(parts)


def _find(attr: str, keys: Any, image: Any) -> Mapping[str, Any] | None:
    for source in (keys, image):
        if isinstance(source, Mapping) and isinstance(source.get(attr), Mapping):
            value: Mapping[str, Any] = source[attr]
            return value
    return None


def _to_key_value(
    value: Mapping[str, Any], expected: str | None, source_attr: str, max_bytes: int
) -> dict[str, Any]:
    if len(value) != 1:
        raise Unmappable(f"source attribute '{source_attr}' is not a single typed value")
    ((type_, raw),) = value.items()
    if type_ not in KEY_TYPES:
        raise Unmappable(f"source attribute '{source_attr}' is {type_}; keys are S, N or B")
    if expected and type_ != expected:
        raise Unmappable(
            f"source attribute '{source_attr}' is {type_}; target key needs {expected}"
        )
    if type_ == "S":
        return {"S": _checked_string(raw, source_attr, max_bytes)}
    if type_ == "N":
        return {"N": _checked_number(raw, source_attr)}
    return {"B": _checked_binary(raw, source_attr, max_bytes)}


def _checked_string(raw: Any, source_attr: str, max_bytes: int) -> str:
    if not isinstance(raw, str) or not raw:
        raise Unmappable(f"source attribute '{source_attr}' is not a non-empty string")
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise Unmappable(f"source attribute '{source_attr}' is longer than {max_bytes} bytes")
    return raw


def _checked_number(raw: Any, source_attr: str) -> str:
    try:
        number = Decimal(raw) if isinstance(raw, str) and _NUMBER.fullmatch(raw) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise Unmappable(f"source attribute '{source_attr}' is not a number")
    if number:
        # Count significant digits exactly: normalize() would round to the context precision.
        digits = "".join(map(str, number.as_tuple().digits)).strip("0")
        if (
            len(digits) > MAX_NUMBER_DIGITS
            or number.adjusted() > MAX_NUMBER_ADJUSTED_EXPONENT
            or number.adjusted() < MIN_NUMBER_EXPONENT
        ):
            raise Unmappable(f"source attribute '{source_attr}' is outside DynamoDB's number range")
    return str(raw)


def _checked_binary(raw: Any, source_attr: str, max_bytes: int) -> bytes:
    if isinstance(raw, bytes | bytearray):
        data = bytes(raw)
    elif isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Unmappable(f"source attribute '{source_attr}' is not base64") from None
    else:
        raise Unmappable(f"source attribute '{source_attr}' is not binary")
    if not data:
        raise Unmappable(f"source attribute '{source_attr}' is empty binary")
    if len(data) > max_bytes:
        raise Unmappable(f"source attribute '{source_attr}' is longer than {max_bytes} bytes")
    return data
