"""The function's own filter matcher (``runtime/scavenger/filtering.py``) against moto's
maintained EventBridge matcher: the backfill worker runs in Lambda with the standard library
only, and must select exactly the records the mapping delivers.

Generated values avoid what moto decides by Python's rules rather than JSON's (``True == 1``,
``1 == 1.0``, dotted keys): those are pinned by examples below instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from moto.events.models import EventPattern

from stream_scavenger.runtime.scavenger.filtering import FilterPattern, FilterPatternError

KEYS = st.sampled_from(["a", "b", "eventName", "S"])
TEXT = st.text(alphabet="aAbB", max_size=3)
NUMBER = st.integers(min_value=2, max_value=9)
VALUE = st.one_of(TEXT, NUMBER, st.none())

RULE = st.one_of(
    VALUE,
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(lambda t: {"prefix": t}, TEXT),
    st.builds(lambda t: {"prefix": {"equals-ignore-case": t}}, TEXT),
    st.builds(lambda t: {"suffix": t}, TEXT),
    st.builds(lambda t: {"suffix": {"equals-ignore-case": t}}, TEXT),
    st.builds(lambda t: {"equals-ignore-case": t}, TEXT),
    st.builds(
        lambda op, n: {"numeric": [op, n]}, st.sampled_from(["=", "<", "<=", ">", ">="]), NUMBER
    ),
    st.builds(lambda lo, hi: {"numeric": [">=", lo, "<", hi]}, NUMBER, NUMBER),
    st.builds(
        lambda v: {"anything-but": v}, st.one_of(VALUE, st.lists(VALUE, min_size=1, max_size=3))
    ),
    st.builds(
        lambda name, t: {"anything-but": {name: t}},
        st.sampled_from(["prefix", "suffix", "equals-ignore-case"]),
        TEXT,
    ),
)

PATTERNS = st.recursive(
    st.dictionaries(KEYS, st.lists(RULE, min_size=1, max_size=3), min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.dictionaries(KEYS, inner, min_size=1, max_size=2),
        st.builds(lambda a, b: {"$or": [a, b]}, inner, inner),
    ),
    max_leaves=4,
)

LEAF = st.one_of(VALUE, st.lists(VALUE, max_size=3))
RECORDS = st.recursive(
    st.dictionaries(KEYS, LEAF, max_size=3),
    lambda inner: st.dictionaries(KEYS, st.one_of(LEAF, inner), max_size=3),
    max_leaves=8,
)


def moto_matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool | None:
    try:
        loaded = EventPattern.load(json.dumps(pattern))
    except Exception:  # noqa: BLE001 - moto refuses the pattern: nothing to compare
        return None
    return bool(loaded.matches_event(record))  # type: ignore[arg-type]


@given(PATTERNS, RECORDS)
def test_the_matcher_agrees_with_moto(pattern: dict[str, Any], record: dict[str, Any]) -> None:
    expected = moto_matches(pattern, record)
    assume(expected is not None)
    assert FilterPattern(pattern).matches(record) is expected


DYNAMODB_RECORD = {
    "eventName": "INSERT",
    "dynamodb": {
        "Keys": {"messageId": {"S": "m-1"}},
        "NewImage": {
            "messageId": {"S": "m-1"},
            "kind": {"S": "Chat"},
            "archived": {"BOOL": True},
            "size": {"N": "12"},
            "tags": {"SS": ["x", "y"]},
            "note": {"NULL": True},
        },
    },
}


@pytest.mark.parametrize(
    ("pattern", "selects"),
    [
        ({"eventName": ["INSERT"]}, True),
        ({"eventName": ["MODIFY", "REMOVE"]}, False),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"prefix": "Ch"}]}}}}, True),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"equals-ignore-case": "chat"}]}}}}, True),
        ({"dynamodb": {"NewImage": {"archived": {"BOOL": [True]}}}}, True),
        # a boolean is no number: moto's Python equality would take True for 1
        ({"dynamodb": {"NewImage": {"archived": {"BOOL": [1]}}}}, False),
        ({"dynamodb": {"NewImage": {"archived": {"BOOL": [{"numeric": [">", 0]}]}}}}, False),
        # DynamoDB numbers are strings in a record: a numeric rule never matches them
        ({"dynamodb": {"NewImage": {"size": {"N": [{"numeric": [">", 10]}]}}}}, False),
        ({"dynamodb": {"NewImage": {"size": {"N": ["12"]}}}}, True),
        ({"dynamodb": {"NewImage": {"tags": {"SS": ["y"]}}}}, True),
        ({"dynamodb": {"NewImage": {"tags": {"SS": [{"anything-but": ["x", "y"]}]}}}}, False),
        ({"dynamodb": {"NewImage": {"note": {"NULL": [True]}}}}, True),
        ({"dynamodb": {"NewImage": {"gone": [{"exists": False}]}}}, True),
        # an object is not a leaf: exists asks about leaves
        ({"dynamodb": {"NewImage": [{"exists": True}]}}, False),
        (
            {
                "$or": [
                    {"eventName": ["MODIFY"]},
                    {"dynamodb": {"Keys": {"messageId": {"S": ["m-1"]}}}},
                ]
            },
            True,
        ),
    ],
)
def test_dynamodb_records(pattern: dict[str, Any], selects: bool) -> None:
    assert FilterPattern(pattern).matches(DYNAMODB_RECORD) is selects


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "not json",
        '{"a": "INSERT"}',
        '{"a": []}',
        '{"a": [{"wildcard": "I*"}]}',
        '{"a": [{"cidr": "10.0.0.0/8"}]}',
        '{"a": [{"numeric": [">", "1"]}]}',
        '{"a": [{"numeric": ["!=", 1]}]}',
        '{"a": [{"prefix": "x", "suffix": "y"}]}',
        '{"a": [{"anything-but": {"wildcard": "x*"}}]}',
        '{"$or": [{"a": ["x"]}]}',
    ],
)
def test_a_pattern_it_cannot_decide_is_refused(text: str) -> None:
    """Refused rather than guessed: moto matches an unknown rule as if it held."""
    with pytest.raises(FilterPatternError):
        FilterPattern.load(text)
