"""What to do with one stream record: find the key it names in a target.

Everything here is pure: no I/O, no clock. For each target, a record either
maps to a :class:`TargetKey`, is skipped (the target does not act on its
event), or raises :class:`Unmappable` with a reason that names attributes,
never values.

The key checks accept exactly what DynamoDB accepts (``tests/test_key_oracle.py``
asks DynamoDB Local), spelled as the stream record spells it, and give two
spellings the same :data:`Identity` exactly when DynamoDB reads them as one item:

- ``N``: DynamoDB parses numbers with Java's ``BigDecimal``: an optional sign,
  digits with at most one point, an optional ``e``/``E`` exponent that fits a
  32-bit int (as must the resulting scale, even for zero); a digit is any
  decimal digit of the Basic Multilingual Plane (``"\u0663"`` is 3), never an
  astral one (``"\U0001d7cf"``) or a look-alike (``"\u00b2"``); no spaces or
  ``_``. Then at most 38 significant digits and a magnitude of 1E-130 to below
  1E+126. ``1``, ``1.0``, ``+1``, ``1e0`` and ``\u0661`` are one item, ``-0`` is ``0``.
- ``S``: sizes count UTF-8 bytes of the string DynamoDB stores, in which a lone
  surrogate (a JSON ``"\\ud800"`` escape) is the one byte ``?``: ``"x\\ud800"`` and
  ``"x?"`` are one item. ``NFC`` and ``NFD`` spellings are two items.
- ``B``: base64 as DynamoDB decodes it: whitespace (any character up to U+0020)
  only between groups of four, padding required, a padded group may be followed
  by more (``"YQ==YQ=="`` is ``aa``), pad bits ignored (``"YR=="`` is ``a``), no
  URL-safe alphabet.

Every check is one pass over the value with string built-ins: no regular
expression, no ``Decimal``, and ``int()`` only on at most ten digits.
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

from .config import (
    EVENT_NAMES,
    KEY_TYPES,
    Placeholder,
    TargetConfig,
    is_template,
    parse_template,
)
from .config import IMAGE_FOR_EVENT as _IMAGE_FOR_EVENT

#: DynamoDB's limits on key attribute values, in bytes.
#: What ``isinstance`` takes for a JSON object: ``dict`` first, as the ABC's check is slow.
MAPPINGS = (dict, Mapping)
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
#: DynamoDB numbers: up to 38 significant digits, magnitude 1E-130 .. 9.9...9E+125.
MAX_NUMBER_DIGITS = 38
MIN_NUMBER_EXPONENT = -130
MAX_NUMBER_ADJUSTED_EXPONENT = 125
#: BigDecimal keeps its exponent and scale in a Java int.
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
#: An exponent has at most this many digits after its leading zeros (BigDecimal's rule).
_MAX_EXPONENT_DIGITS = 10

#: The zero of every run of ten decimal digits (Unicode category Nd) in the Basic
#: Multilingual Plane: what ``Character.isDigit(char)`` accepts. BigDecimal reads
#: UTF-16 code units, so the astral runs (U+1D7CE, ...) are no digits to it.
_BMP_DIGIT_ZEROS = (
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6,
    0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0,
    0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620,
    0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
)  # fmt: skip
_TO_ASCII_DIGITS = {zero + d: ord("0") + d for zero in _BMP_DIGIT_ZEROS[1:] for d in range(10)}

_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = str.maketrans("", "", _BASE64_ALPHABET + "=")
#: What the base64 decoder skips between groups: every character up to U+0020.
_SPACES = {c: 0x20 for c in range(0x20)}

Identity = tuple[tuple[str, str, Any], ...]
"""Hashable form of a key; equal exactly when DynamoDB treats two keys as one item."""

Number = tuple[str, str, int]
"""A number as DynamoDB holds it: sign (``""`` or ``"-"``), significant digits with
no leading or trailing zero (``""`` for zero), and the exponent of the first digit."""

_ZERO: Number = ("", "", 0)


class Unmappable(Exception):
    """The record can never yield a valid target key; retrying it cannot help."""


class TargetKey(NamedTuple):
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
    if not isinstance(record, MAPPINGS):
        raise Unmappable(f"record is a {type(record).__name__}, not an object")
    source = record.get("eventSource", "aws:dynamodb")
    if source != "aws:dynamodb":
        raise Unmappable(f"record comes from {_shown(source, 40)}, not a DynamoDB stream")
    name = record.get("eventName")
    if not isinstance(name, str) or name not in EVENT_NAMES:
        raise Unmappable(f"eventName {_shown(name, 20)} is not INSERT, MODIFY or REMOVE")
    return name


def map_record(record: Mapping[str, Any], target: TargetConfig) -> TargetKey:
    """The key in ``target`` a selected record names, or :class:`Unmappable`."""
    stream = record.get("dynamodb")
    if not isinstance(stream, MAPPINGS):
        raise Unmappable("record has no 'dynamodb' object")
    keys = stream.get("Keys")
    event_name = record.get("eventName")
    image = stream.get(_IMAGE_FOR_EVENT[event_name] if event_name in EVENT_NAMES else "NewImage")
    request: dict[str, dict[str, Any]] = {}
    parts = []
    for target_attr, source in target.key_mapping.items():
        max_bytes = (
            MAX_SORT_KEY_BYTES if target_attr == target.sort_key else MAX_PARTITION_KEY_BYTES
        )
        if is_template(source):
            rendered = _render(_parsed(source), keys, image)
            text, canonical = _checked_string(rendered, f"template {source}", max_bytes)
            request[target_attr] = {"S": text}
            parts.append((target_attr, "S", canonical))
            continue
        value = _find(source, keys, image)
        if value is None:
            raise Unmappable(f"source attribute '{source}' is not in the record")
        type_, sent, canonical = _to_key_value(
            value, target.key_types.get(target_attr), source, max_bytes
        )
        request[target_attr] = {type_: sent}
        parts.append((target_attr, type_, canonical))
    return TargetKey(table=target.table, identity=tuple(sorted(parts)), request=request)


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
                f"source attribute '{part.attribute}' is {_shown(type_, 20)}; templates take S or N"
            )
    return "".join(out)


def _number_text(number: Number) -> str:
    """A DynamoDB number as DynamoDB stores it: no exponent, no insignificant zeros."""
    sign, digits, adjusted = number
    if not digits:
        return "0"
    if adjusted < 0:
        return f"{sign}0.{'0' * (-adjusted - 1)}{digits}"
    if adjusted + 1 >= len(digits):
        return sign + digits + "0" * (adjusted + 1 - len(digits))
    return f"{sign}{digits[: adjusted + 1]}.{digits[adjusted + 1 :]}"


def identity_of(key: Mapping[str, Mapping[str, Any]]) -> Identity:
    """Identity of a key in request form (as sent to, or returned by, boto3).

    Raises ``ValueError`` for a value no key of DynamoDB can hold.
    """
    parts = []
    for attr in sorted(key):
        ((type_, value),) = key[attr].items()
        canonical: Any
        if type_ == "N":
            number = parse_number(value)
            if number is None:
                raise ValueError(f"attribute '{attr}' is not a DynamoDB number")
            canonical = number
        elif type_ == "B":
            canonical = bytes(value)
        elif type_ == "S" and isinstance(value, str):
            canonical = stored_string(value)
        else:
            raise ValueError(f"attribute '{attr}' is not an S, N or B value")
        parts.append((attr, type_, canonical))
    return tuple(parts)


def _find(attr: str, keys: Any, image: Any) -> Mapping[str, Any] | None:
    for source in (keys, image):
        if isinstance(source, MAPPINGS) and isinstance(source.get(attr), MAPPINGS):
            value: Mapping[str, Any] = source[attr]
            return value
    return None


def _to_key_value(
    value: Mapping[str, Any], expected: str | None, source_attr: str, max_bytes: int
) -> tuple[str, Any, Any]:
    """``(type, value to send, canonical value)`` of one typed key value."""
    if len(value) != 1:
        raise Unmappable(f"source attribute '{source_attr}' is not a single typed value")
    ((type_, raw),) = value.items()
    if type_ not in KEY_TYPES:
        raise Unmappable(
            f"source attribute '{source_attr}' is {_shown(type_, 20)}; keys are S, N or B"
        )
    if expected and type_ != expected:
        raise Unmappable(
            f"source attribute '{source_attr}' is {type_}; target key needs {expected}"
        )
    if type_ == "S":
        return ("S", *_checked_string(raw, source_attr, max_bytes))
    if type_ == "N":
        # Sent as spelled (DynamoDB takes every spelling parse_number takes).
        return "N", raw, _checked_number(raw, source_attr)
    data = _checked_binary(raw, source_attr, max_bytes)
    return "B", data, data


def _checked_string(raw: Any, source_attr: str, max_bytes: int) -> tuple[str, str]:
    """``(raw, the string DynamoDB stores)`` for a valid string key value."""
    if not isinstance(raw, str) or not raw:
        raise Unmappable(f"source attribute '{source_attr}' is not a non-empty string")
    # Each character is at least one byte: a longer string never fits (and is not encoded).
    if len(raw) > max_bytes:
        raise Unmappable(f"source attribute '{source_attr}' is longer than {max_bytes} bytes")
    stored = stored_string(raw)
    if len(stored.encode("utf-8")) > max_bytes:
        raise Unmappable(f"source attribute '{source_attr}' is longer than {max_bytes} bytes")
    return raw, stored


def stored_string(raw: str) -> str:
    """``raw`` as DynamoDB stores it (and sizes it, in UTF-8).

    A string reaches DynamoDB as UTF-16 (JSON escapes): a high and a low surrogate
    in a row are one character, and each lone surrogate left becomes ``?``.
    """
    if raw.isascii():
        return raw
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # there are surrogates
        paired = raw.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return paired.encode("utf-8", "replace").decode("utf-8")
    return raw


def _checked_number(raw: Any, source_attr: str) -> Number:
    number = parse_number(raw)
    if number is None:
        raise Unmappable(
            f"source attribute '{source_attr}' is not a number DynamoDB can store "
            f"(at most {MAX_NUMBER_DIGITS} significant digits, magnitude 1E-130 to below 1E+126)"
        )
    return number


def parse_number(raw: Any) -> Number | None:
    """A number as DynamoDB reads ``raw``, or None when DynamoDB refuses it.

    The grammar of Java's ``BigDecimal(String)`` (BMP decimal digits, a Java-int
    exponent and scale), then DynamoDB's precision and range.
    """
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.translate(_TO_ASCII_DIGITS)
    if not text.isascii():  # astral digits, lone surrogates, any other letter
        return None
    sign = text[0] if text[0] in "+-" else ""
    mantissa, marker, exponent_text = text[len(sign) :].replace("E", "e").partition("e")
    whole, _, fraction = mantissa.partition(".")
    if not (whole or fraction) or not _digits_or_empty(whole) or not _digits_or_empty(fraction):
        return None
    exponent = 0
    if marker:
        exponent_sign = exponent_text[:1] if exponent_text[:1] in "+-" else ""
        exponent_digits = exponent_text[len(exponent_sign) :]
        if not exponent_digits.isdigit():
            return None
        significant = exponent_digits.lstrip("0")
        if len(significant) > _MAX_EXPONENT_DIGITS:
            return None
        exponent = int(significant or "0")
        if exponent_sign == "-":
            exponent = -exponent
        if not _INT_MIN <= exponent <= _INT_MAX:
            return None
    if not _INT_MIN <= len(fraction) - exponent <= _INT_MAX:  # BigDecimal's scale
        return None
    digits = whole + fraction
    stripped = digits.lstrip("0")
    if not stripped:
        return _ZERO
    adjusted = len(whole) - 1 - (len(digits) - len(stripped)) + exponent
    significant = stripped.rstrip("0")
    if (
        len(significant) > MAX_NUMBER_DIGITS
        or adjusted > MAX_NUMBER_ADJUSTED_EXPONENT
        or adjusted < MIN_NUMBER_EXPONENT
    ):
        return None
    return ("-" if sign == "-" else "", significant, adjusted)


def _digits_or_empty(text: str) -> bool:
    """Only ASCII digits (``text`` is ASCII here, where ``isdigit`` means 0-9)."""
    return not text or text.isdigit()


def _checked_binary(raw: Any, source_attr: str, max_bytes: int) -> bytes:
    if isinstance(raw, bytes | bytearray):
        data: bytes | None = bytes(raw)
    elif isinstance(raw, str):
        # Refused before decoding when it cannot fit. Base64 that decode_base64 takes is
        # groups of four characters (whitespace aside), each 3 bytes less one per "=" (more
        # groups may follow a padded one, so a group may hold a single byte): the exact size
        # of what it decodes to. A value DynamoDB would refuse anyway is refused either way.
        if len(raw) > 4 * max_bytes:
            spaced = raw.translate(_SPACES)
            groups = (len(spaced) - spaced.count(" ")) // 4
            if 3 * groups - spaced.count("=") > max_bytes:
                raise Unmappable(
                    f"source attribute '{source_attr}' is longer than {max_bytes} bytes"
                )
        data = decode_base64(raw)
        if data is None:
            raise Unmappable(f"source attribute '{source_attr}' is not base64 DynamoDB can read")
    else:
        raise Unmappable(f"source attribute '{source_attr}' is not binary")
    if not data:
        raise Unmappable(f"source attribute '{source_attr}' is empty binary")
    if len(data) > max_bytes:
        raise Unmappable(f"source attribute '{source_attr}' is longer than {max_bytes} bytes")
    return data


def decode_base64(raw: str) -> bytes | None:
    """The bytes DynamoDB reads from base64 ``raw``, or None when it refuses it.

    Groups of four characters, the last two of a group may be ``==`` or the last
    one ``=`` (pad bits are ignored), more groups may follow a padded one, and
    characters up to U+0020 are skipped between groups only.
    """
    if not raw.isascii():
        return None
    groups = raw.translate(_SPACES).split(" ")
    if any(len(group) % 4 for group in groups):  # a space inside a group, or one cut short
        return None
    text = "".join(groups)
    if text.translate(_NOT_BASE64):
        return None
    chunks = []
    start = 0
    pad = text.find("=")
    while pad != -1:  # once per padded group
        offset = pad % 4
        if offset < 2 or (offset == 2 and text[pad + 1] != "="):
            return None
        end = pad - offset + 4
        chunks.append(binascii.a2b_base64(text[start:end]))
        start = end
        pad = text.find("=", end)
    chunks.append(binascii.a2b_base64(text[start:]))
    return b"".join(chunks)


def _shown(value: Any, limit: int) -> str:
    """A short description of a value for a reason: a string's start, else its type."""
    if isinstance(value, str):
        return repr(value[:limit])
    return "a " + type(value).__name__
