"""An event source mapping's filter patterns, matched without any library.

Lambda filters stream records with EventBridge's pattern syntax. The backfill worker (in the
function's asset, so with the standard library only) must select exactly the records the
mapping would deliver, so the project has this one matcher; its test holds it to moto's
maintained EventBridge matcher on generated patterns and records.

A pattern is a JSON object whose leaves are lists of alternatives: a value (string, number,
boolean, null) equal to the record's, or one of ``exists``, ``prefix``, ``suffix``,
``equals-ignore-case`` (``prefix`` and ``suffix`` may hold ``{"equals-ignore-case": ...}``),
``numeric`` (``=``, ``<``, ``<=``, ``>``, ``>=`` and a number, one or two pairs) and
``anything-but`` (a value, a list of values, or ``prefix``/``suffix``/``equals-ignore-case``);
``$or`` takes a list of patterns. Every key of a pattern must match; a record field that is
a list matches when one of its elements does. A leaf is a value that is not a non-empty
object: an object where a leaf is asked for counts as absent, as in EventBridge. Anything
else is refused when the pattern is loaded (never guess wider than Lambda).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_ABSENT = object()

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TEXT_OPERATORS = ("prefix", "suffix", "equals-ignore-case")


class FilterPatternError(ValueError):
    """A filter pattern this matcher cannot decide exactly as Lambda does."""


class FilterPattern:
    """One ``FilterCriteria`` filter's ``Pattern``: :meth:`matches` a record (a JSON value)."""

    def __init__(self, pattern: Mapping[str, Any]) -> None:
        _check_pattern(pattern, "pattern")
        self._pattern = pattern

    @classmethod
    def load(cls, text: str) -> FilterPattern:
        """The pattern in ``text`` (JSON), or :class:`FilterPatternError`."""
        try:
            pattern = json.loads(text)
        except ValueError as err:
            raise FilterPatternError(f"a filter pattern is not JSON: {err}") from None
        if not isinstance(pattern, dict):
            raise FilterPatternError("a filter pattern must be a JSON object")
        return cls(pattern)

    @property
    def pattern(self) -> Mapping[str, Any]:
        """The pattern, as loaded."""
        return self._pattern

    def matches(self, record: Any) -> bool:
        """Whether ``record`` passes the pattern."""
        return _matches(self._pattern, record)


@dataclass(frozen=True)
class MappingFilters:
    """An event source mapping's ``FilterCriteria``: the one matcher of the project. The
    local mapping, redrive and backfill (here and in Lambda) all use it, so a record the
    mapping would filter out is never deleted by a replay or a backfill either."""

    patterns: tuple[FilterPattern, ...] = ()

    @classmethod
    def of(cls, properties: Mapping[str, Any]) -> MappingFilters:
        """The filters of a mapping's properties (template or ``GetEventSourceMapping`` shape)."""
        filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
        patterns = [f.get("Pattern") if isinstance(f, Mapping) else None for f in filters]
        texts = [pattern for pattern in patterns if isinstance(pattern, str)]
        if len(texts) != len(patterns):
            # Dropping it would select more than the mapping does: never guess wider.
            raise FilterPatternError("a FilterCriteria filter has no Pattern string")
        return cls(tuple(FilterPattern.load(text) for text in texts))

    def selects(self, record: Mapping[str, Any]) -> bool:
        """Whether the mapping delivers ``record`` (no filters: every record)."""
        return not self.patterns or any(p.matches(record) for p in self.patterns)


def alternatives(pattern: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pattern and each branch of its ``$or``, nested ones too (each may name fields)."""
    found = [pattern]
    for branch in pattern.get("$or") or []:
        if isinstance(branch, Mapping):
            found += alternatives(branch)
    return found


def _matches(pattern: Mapping[str, Any], node: Any) -> bool:
    if isinstance(node, list) and any(isinstance(element, Mapping) for element in node):
        # A path through a list of objects (a DynamoDB L of maps or values): EventBridge
        # would look into each element, which this matcher does not; unsure, so no match
        # (a replay or backfill then keeps the record rather than delete by a guess).
        return False
    for key, expected in pattern.items():
        if key == "$or":
            if not any(_matches(alternative, node) for alternative in expected):
                return False
            continue
        value = node.get(key, _ABSENT) if isinstance(node, Mapping) else _ABSENT
        if isinstance(expected, Mapping):
            if not _matches(expected, value):
                return False
        elif not _leaf_matches(expected, _leaf(value)):
            return False
    return True


def _leaf(value: Any) -> Any:
    """A record value as a leaf: an object with fields is no leaf (absent)."""
    return _ABSENT if isinstance(value, Mapping) and value else value


def _leaf_matches(alternatives: Sequence[Any], value: Any) -> bool:
    for alternative in alternatives:
        if isinstance(alternative, Mapping):
            ((name, argument),) = alternative.items()
            if name == "exists":
                if (value is not _ABSENT) == argument:
                    return True
            elif value is not _ABSENT and _any_element(value, name, argument):
                return True
        elif value is not _ABSENT and _any_element(value, "=", alternative):
            return True
    return False


def _any_element(value: Any, name: str, argument: Any) -> bool:
    """Whether the value (or, for a list, one of its elements) passes operator ``name``."""
    elements = value if isinstance(value, list) else [value]
    return any(_passes(element, name, argument) for element in elements)


def _passes(value: Any, name: str, argument: Any) -> bool:
    if name == "=":
        return _same(value, argument)
    if name == "anything-but":
        if isinstance(argument, Mapping):
            ((inner, text),) = argument.items()
            # Anything but a string that passes: a number or null passes too (as moto has it).
            return not (isinstance(value, str) and _text(value, inner, text))
        excluded = argument if isinstance(argument, list) else [argument]
        return not any(_same(value, other) for other in excluded)
    if name == "numeric":
        if not _is_number(value):
            return False
        pairs = zip(argument[::2], argument[1::2], strict=True)
        return all(_COMPARE[op](value, bound) for op, bound in pairs)
    if isinstance(argument, Mapping):  # prefix/suffix: {"equals-ignore-case": text}
        ((_, text),) = argument.items()
        return isinstance(value, str) and _text(value.lower(), name, text.lower())
    return isinstance(value, str) and _text(value, name, argument)


def _text(value: str, name: str, argument: str) -> bool:
    if name == "prefix":
        return value.startswith(argument)
    if name == "suffix":
        return value.endswith(argument)
    return value.lower() == argument.lower()  # equals-ignore-case


def _same(value: Any, other: Any) -> bool:
    """JSON equality: a boolean is no number, and a number no string."""
    if isinstance(value, bool) or isinstance(other, bool):
        return isinstance(value, bool) and isinstance(other, bool) and value == other
    if _is_number(value) or _is_number(other):
        return _is_number(value) and _is_number(other) and value == other
    return type(value) is type(other) and value == other


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---- validation, when the pattern is loaded ---------------------------------------------


def _check_pattern(pattern: Any, where: str) -> None:
    if not isinstance(pattern, Mapping) or not pattern:
        raise FilterPatternError(f"{where} must be a non-empty JSON object")
    for key, value in pattern.items():
        at = f"{where}.{key}"
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise FilterPatternError(f"{at} must be a list of at least two patterns")
            for index, alternative in enumerate(value):
                _check_pattern(alternative, f"{at}[{index}]")
        elif isinstance(value, Mapping):
            _check_pattern(value, at)
        elif isinstance(value, list) and value:
            for alternative in value:
                _check_alternative(alternative, at)
        else:
            raise FilterPatternError(f"{at} must be an object or a non-empty list of rules")


def _check_alternative(rule: Any, at: str) -> None:
    if rule is None or isinstance(rule, str | bool) or _is_number(rule):
        return
    if not isinstance(rule, Mapping) or len(rule) != 1:
        raise FilterPatternError(f"{at}: {json.dumps(rule)} is not a value or a one-key rule")
    ((name, argument),) = rule.items()
    if name == "exists" and isinstance(argument, bool):
        return
    if name in ("prefix", "suffix") and _is_ignore_case(argument):
        return
    if name in _TEXT_OPERATORS and isinstance(argument, str):
        return
    if name == "numeric" and _is_numeric_range(argument):
        return
    if name == "anything-but" and _is_anything_but(argument):
        return
    raise FilterPatternError(
        f"{at}: the rule {json.dumps(rule)} is not one this matcher decides as Lambda does "
        "(values, exists, prefix, suffix, equals-ignore-case, numeric, anything-but)"
    )


def _is_ignore_case(argument: Any) -> bool:
    return (
        isinstance(argument, Mapping)
        and list(argument) == ["equals-ignore-case"]
        and isinstance(argument["equals-ignore-case"], str)
    )


def _is_numeric_range(argument: Any) -> bool:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        return False
    pairs = list(zip(argument[::2], argument[1::2], strict=True))
    return all(op in _COMPARE and _is_number(bound) for op, bound in pairs)


def _is_anything_but(argument: Any) -> bool:
    if isinstance(argument, Mapping):
        return len(argument) == 1 and all(
            name in _TEXT_OPERATORS and isinstance(text, str) for name, text in argument.items()
        )
    values = argument if isinstance(argument, list) else [argument]
    return bool(values) and all(
        v is None or isinstance(v, str | bool) or _is_number(v) for v in values
    )
