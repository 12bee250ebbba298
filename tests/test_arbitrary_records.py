"""No input makes the handler raise, hang or lose a good record's delete.

A property builds arbitrary JSON (``st.recursive`` over null, booleans, numbers,
strings, lists and objects) into every field of some records of a batch, mixes
them with good records, and runs ``Scavenger.handle`` against DynamoDB Local, with a
client that sometimes leaves keys unprocessed so that records get reported.

Linearity is measured without a clock, by counting work (``sys.settrace`` and
``sys.setprofile``): validating a value of a million characters does no more
Python steps than one of a thousand (base64: a few per group of four), calls only
built-ins that read their input once (no regular expression, no ``Decimal``), and
gives ``int()`` at most ten characters.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_scavenger.runtime.scavenger import records
from stream_scavenger.runtime.scavenger.config import ScavengerConfig, TargetConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger, UnreportableFailure
from testkit.events import Context, record
from testkit.tables import put_items

_runs = itertools.count()

# ---- arbitrary JSON ------------------------------------------------------------------------

#: Strings that have broken key checks or sequence-number sorting before.
NASTY_STRINGS = [
    "",
    " ",
    "\u00b2",
    "\u0663",
    "\U0001d7cf",
    "\ud800",
    "\x00",
    "1" * 5000,
    "1" * 20_000 + "x",
    "1e" + "9" * 20_000,
    "0e2147483648",
    "9" * 39,
    "1e126",
    "NaN",
    "YQ==YQ==",
    "!!",
    "\u00e9" * 1025,
    "INSERT",
    "aws:dynamodb",
    "S",
    "N",
    "B",
]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs", "Nd", "No", "Zs", "Cc"]), max_size=8),
    st.sampled_from(NASTY_STRINGS),
)


def _typed(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """DynamoDB-shaped values: {"S": x}, {"N": x}, ... with arbitrary contents."""
    return st.dictionaries(
        st.sampled_from(["S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL", "s", ""]),
        children,
        min_size=1,
        max_size=2,
    )


json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
        _typed(children),
    ),
    max_leaves=12,
)

#: Every field of a record Lambda delivers, and some inside its typed values.
PATHS: list[tuple[str, ...]] = [
    (),
    ("eventID",),
    ("eventName",),
    ("eventVersion",),
    ("eventSource",),
    ("awsRegion",),
    ("eventSourceARN",),
    ("dynamodb",),
    ("dynamodb", "ApproximateCreationDateTime"),
    ("dynamodb", "Keys"),
    ("dynamodb", "Keys", "pk"),
    ("dynamodb", "Keys", "pk", "S"),
    ("dynamodb", "Keys", "sk"),
    ("dynamodb", "Keys", "sk", "N"),
    ("dynamodb", "NewImage"),
    ("dynamodb", "NewImage", "pk"),
    ("dynamodb", "NewImage", "ref"),
    ("dynamodb", "NewImage", "ref", "S"),
    ("dynamodb", "OldImage"),
    ("dynamodb", "SequenceNumber"),
    ("dynamodb", "SizeBytes"),
    ("dynamodb", "StreamViewType"),
]


#: Sequence numbers as no shard writes them: int() refuses some, others are no numbers.
_ODD_SEQUENCES = st.sampled_from(
    ["\u00b2", "1\u00b2", "\u0663", "1" * 5000, "0007", "shard-1", "\ud800", "9" * 40, " 1"]
)
sequence_spellings = st.one_of(
    _ODD_SEQUENCES,
    _ODD_SEQUENCES,
    st.text(st.sampled_from("0123456789\u00b2\u0663\U0001d7cf"), min_size=1, max_size=60),
    st.text(min_size=1, max_size=6),
)


@st.composite
def mutated_record(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` with one to three fields replaced by arbitrary JSON, removed, or retyped."""
    rec: Any = json.loads(json.dumps(base))
    if draw(st.booleans()):
        rec["dynamodb"]["SequenceNumber"] = draw(st.one_of(sequence_spellings, json_values))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        action = draw(st.sampled_from(["set", "set", "delete", "retype"]))
        if not path:
            rec = draw(json_values) if action == "set" else rec
            continue
        parent = rec
        for step in path[:-1]:
            parent = parent.get(step) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        leaf = path[-1]
        if action == "set":
            parent[leaf] = draw(json_values)
        elif action == "delete":
            parent.pop(leaf, None)
        elif isinstance(parent.get(leaf), dict) and len(parent[leaf]) == 1:
            ((_, value),) = parent[leaf].items()
            parent[leaf] = {draw(st.sampled_from(["S", "N", "B", "SS", "NULL", "M"])): value}
    return rec


# ---- the batch -----------------------------------------------------------------------------


class Flaky:
    """Passes deletes to DynamoDB Local but, per a drawn plan, leaves some unprocessed."""

    def __init__(self, client: Any, plan: random.Random, rate: float) -> None:
        self.client = client
        self.plan = plan
        self.rate = rate

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        send: dict[str, list[Any]] = {}
        left: dict[str, list[Any]] = {}
        for table, items in kwargs["RequestItems"].items():
            for item in items:
                (left if self.plan.random() < self.rate else send).setdefault(table, []).append(
                    item
                )
        response = dict(self.client.batch_write_item(RequestItems=send)) if send else {}
        response["UnprocessedItems"] = left
        return response


@pytest.fixture(scope="module")
def tables(ddb: Any) -> tuple[str, str]:
    plain, templated = "arbitrary_plain", "arbitrary_templated"
    for name, sk_type in ((plain, "N"), (templated, "S")):
        ddb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": sk_type},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    return plain, templated


def _config(plain: str, templated: str) -> ScavengerConfig:
    return ScavengerConfig(
        targets=(
            TargetConfig(
                plain,
                {"pk": "pk", "sk": "sk"},
                frozenset({"INSERT", "MODIFY"}),
                {"pk": "S", "sk": "N"},
                "sk",
            ),
            # An imported table: key types unknown; a template reading the image too.
            TargetConfig(
                templated,
                {"pk": "T#{pk}", "sk": "MSG#{sk}#{ref}"},
                frozenset({"INSERT", "REMOVE"}),
                {},
                "sk",
            ),
        ),
        max_attempts=2,
    )


def _usable(sequence_number: Any) -> bool:
    return isinstance(sequence_number, str) and sequence_number != ""


def _sequence_of(rec: Any) -> Any:
    stream = rec.get("dynamodb") if isinstance(rec, dict) else None
    return stream.get("SequenceNumber") if isinstance(stream, dict) else None


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
@pytest.mark.ddb
def test_arbitrary_records_never_break_the_batch(
    ddb: Any, tables: tuple[str, str], data: st.DataObject
) -> None:
    plain, templated = tables
    run = next(_runs)
    keys = [(f"good-{run}-{i}", i) for i in range(data.draw(st.integers(1, 4), label="goods"))]
    goods = [
        record(
            "INSERT",
            {"pk": p, "sk": k},
            new={"pk": p, "sk": k, "ref": "r"},
            sequence_number=data.draw(st.one_of(sequence_spellings, st.none()), label="sequence"),
        )
        for p, k in keys
    ]
    bases = [
        record("INSERT", {"pk": f"bad-{run}-{i}", "sk": i}, new={"ref": "r"}) for i in range(4)
    ]
    bads = [
        data.draw(mutated_record(bases[i]), label=f"bad record {i}")
        for i in range(data.draw(st.integers(1, 4), label="bad records"))
    ]
    batch = goods + bads
    data.draw(st.randoms(use_true_random=False), label="order").shuffle(batch)
    event = json.loads(json.dumps({"Records": batch}))  # as Lambda delivers it

    # In both tables: the goods' keys, the keys the bad records named before they were
    # mutated (a skipped or unmappable one must leave its key), and one no record names.
    in_tables = [*keys, *((f"bad-{run}-{i}", i) for i in range(4)), (f"sentinel-{run}", 0)]
    put_items(ddb, plain, [{"pk": p, "sk": k} for p, k in in_tables])
    put_items(ddb, templated, [{"pk": f"T#{p}", "sk": f"MSG#{k}#r"} for p, k in in_tables])
    plan = data.draw(st.randoms(use_true_random=False), label="unprocessed plan")
    rate = data.draw(st.sampled_from([0.0, 0.5, 0.8, 1.0]), label="unprocessed rate")
    scav = Scavenger(_config(plain, templated), Flaky(ddb, plan, rate), sleep=lambda s: None)

    try:
        response = scav.handle(event, Context())
    except UnreportableFailure:
        # Documented: a record to report has no sequence number; Lambda retries the batch.
        assert scav.last_summary.reported > 0
        assert any(not _usable(_sequence_of(r)) for r in event["Records"])
        response = None

    if response is not None:
        assert set(response) == {"batchItemFailures"}
        failures = response["batchItemFailures"]
        assert all(set(f) == {"itemIdentifier"} for f in failures)
        reported = [f["itemIdentifier"] for f in failures]
        present = {_sequence_of(r) for r in event["Records"] if _usable(_sequence_of(r))}
        assert all(isinstance(s, str) and s in present for s in reported)
        assert len(reported) == len(set(reported))
        numeric = [s for s in reported if s.isascii() and s.isdigit()]
        assert numeric == sorted(numeric, key=lambda s: (len(s.lstrip("0")), s.lstrip("0")))
        for (pk, sk), good in zip(keys, goods, strict=True):
            gone = not _exists(ddb, plain, pk, {"N": str(sk)}) and not _exists(
                ddb, templated, f"T#{pk}", {"S": f"MSG#{sk}#r"}
            )
            assert gone or good["dynamodb"]["SequenceNumber"] in reported, pk
    # Nothing else is deleted: a key no record of the batch names (as the runtime maps
    # records, checked against DynamoDB Local by test_key_oracle) is still there.
    plain_target, templated_target = _config(plain, templated).targets
    for target, sort_key in ((plain_target, _plain_sk), (templated_target, _templated_sk)):
        named = _named_keys(event["Records"], target)
        for pk, sk in in_tables:
            key = {"pk": {"S": pk if target is plain_target else f"T#{pk}"}, "sk": sort_key(sk)}
            if records.identity_of(key) not in named:
                assert _exists(ddb, target.table, key["pk"]["S"], key["sk"]), (target.table, pk)


def _plain_sk(sk: int) -> dict[str, str]:
    return {"N": str(sk)}


def _templated_sk(sk: int) -> dict[str, str]:
    return {"S": f"MSG#{sk}#r"}


def _named_keys(batch: list[Any], target: TargetConfig) -> set[records.Identity]:
    """The keys in ``target`` that some record of the batch names (is selected for, and maps
    to); skipped and unmappable records name none."""
    named = set()
    for rec in batch:
        try:
            if records.event_name_of(rec) in target.event_names:
                named.add(records.map_record(rec, target).identity)
        except records.Unmappable:
            continue
    return named


def _exists(ddb: Any, table: str, pk: str, sk: dict[str, str]) -> bool:
    return "Item" in ddb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": sk})


# ---- linear validation, by counting work ---------------------------------------------------

#: Built-ins that read their input once (CPython implements each as a single pass).
SINGLE_PASS = {
    "isinstance", "len", "translate", "isascii", "isdigit", "partition", "replace", "lstrip",
    "rstrip", "find", "split", "join", "encode", "decode", "a2b_base64", "get", "items",
    "startswith", "append", "sorted", "any", "count",
    "_abc_instancecheck",  # isinstance(record, Mapping): the record, not the value
    "__new__",  # tuple.__new__: a TargetKey (a NamedTuple) from its three fields
    "settrace", "setprofile",  # the measurement itself
}  # fmt: skip


class Work:
    """Python steps and C calls made while validating one value."""

    def __init__(self) -> None:
        self.python_steps = 0
        self.c_calls: dict[str, int] = {}
        self.int_arguments: list[int] = []

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            name = getattr(arg, "__name__", repr(arg))
            self.c_calls[name] = self.c_calls.get(name, 0) + 1

    def trace(self, frame: Any, event: str, arg: Any) -> Any:
        self.python_steps += 1
        return self.trace


def measure(check: Callable[[Any], Any], value: Any) -> Work:
    work = Work()
    real_int = int

    def counting_int(text: Any = 0, *args: Any) -> int:
        work.int_arguments.append(len(text) if isinstance(text, str) else 0)
        return real_int(text, *args)

    # Module globals come before builtins: every int() in records.py goes through this.
    records.int = counting_int  # type: ignore[attr-defined]
    sys.setprofile(work.profile)
    sys.settrace(work.trace)
    try:
        check(value)
    except records.Unmappable:
        pass
    finally:
        sys.settrace(None)
        sys.setprofile(None)
        del records.int  # type: ignore[attr-defined]
    return work


TARGET = ScavengerConfig.single(
    target_table="t", key_mapping={"pk": "pk", "sk": "sk"}, sort_key="sk"
).targets[0]
TEMPLATE = ScavengerConfig.single(target_table="t", key_mapping={"pk": "X#{pk}#{sk}"}).targets[0]


def _map(type_: str, target: TargetConfig = TARGET) -> Callable[[Any], Any]:
    return lambda value: records.map_record(
        {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "p"}, "sk": {type_: value}}}},
        target,
    )


#: (name, check, value of about n characters); each is an input that once took seconds.
FAMILIES = [
    ("malformed number", _map("N"), lambda n: "1" * n + "x"),
    ("number with a point", _map("N"), lambda n: "1" * n + ".5x"),
    ("huge exponent", _map("N"), lambda n: "1e" + "9" * n),
    ("leading zeros", _map("N"), lambda n: "0" * n + "1"),
    ("too many digits", _map("N"), lambda n: "1" * n),
    ("unicode digits", _map("N"), lambda n: "\u0663" * n + "\u00b2"),
    ("number in a template", _map("N", TEMPLATE), lambda n: "0." + "0" * n + "1"),
    ("long string", _map("S"), lambda n: "\u00e9" * n),
    ("lone surrogates", _map("S"), lambda n: "\ud800" * n),
    ("long base64", _map("B"), lambda n: "QUJD" * (n // 4)),
    ("base64 gone wrong at the end", _map("B"), lambda n: "QUJD" * (n // 4) + "Q"),
]


@pytest.mark.parametrize(("name", "check", "make"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_validation_work_does_not_grow_with_the_input(
    name: str, check: Callable[[Any], Any], make: Callable[[int], Any]
) -> None:
    small = measure(check, make(1_000))
    large = measure(check, make(1_000_000))

    assert large.python_steps <= small.python_steps + 5, "a Python loop over the input"
    assert set(large.c_calls) <= SINGLE_PASS, (
        f"not known to be one pass: {set(large.c_calls) - SINGLE_PASS}"
    )
    assert sum(large.c_calls.values()) <= sum(small.c_calls.values()) + 5
    assert all(n <= 10 for n in large.int_arguments), "int() on an unbounded string"


@pytest.mark.parametrize("group", ["YQ==", "QUJD ", "YQ== "], ids=["padded", "spaced", "both"])
def test_base64_work_grows_linearly_with_its_groups(group: str) -> None:
    """A few steps per padded or space-separated group of four characters: linear."""
    small = measure(_map("B"), group * 250)
    large = measure(_map("B"), group * 250_000)
    assert large.python_steps <= 1000 * small.python_steps * 1.01
    assert set(large.c_calls) <= SINGLE_PASS
    assert sum(large.c_calls.values()) <= 1000 * sum(small.c_calls.values()) * 1.01


def test_the_traps_get_the_right_verdict() -> None:
    """The inputs above, at a million characters, mapped as DynamoDB would."""
    number = _map("N")
    for bad in [
        "1" * 1_000_000 + "x",
        "1e" + "9" * 100_000,
        "1" * 1_000_000,
        "\u0663" * 10**6 + "\u00b2",
    ]:
        with pytest.raises(records.Unmappable):
            number(bad)
    assert number("0" * 1_000_000 + "1").identity == number("1").identity
    assert number("0." + "0" * 129 + "1").identity == number("1e-130").identity


def test_a_binary_too_long_to_fit_is_refused_before_it_is_decoded() -> None:
    """6 MB of base64 (Lambda's payload limit) for a 1,024-byte sort key: refused from its
    length, without decoding 4.5 MB first."""
    value = "QUJD" * 1_500_000
    assert "a2b_base64" not in measure(_map("B"), value).c_calls
    with pytest.raises(records.Unmappable, match="longer than 1024 bytes"):
        _map("B")(value)


#: Binary sort keys (1,024 bytes at most) at the length bound, and DynamoDB Local's verdict
#: as seen on this machine: a group of four characters may hold a single byte (``YQ==``,
#: and groups may follow a padded one), so the bound is on the bytes, not the characters.
BINARY_AT_THE_BOUND = {
    "1024 one-byte groups": ("YQ==" * 1024, True),
    "1025 one-byte groups": ("YQ==" * 1025, False),
    "1024 one-byte groups, spaced": ("YQ== " * 1024, True),
    "1025 one-byte groups, spaced": ("YQ== " * 1025, False),
    "1023 + 1 bytes": ("QUJD" * 341 + "QQ==", True),
    "1023 + 2 bytes": ("QUJD" * 341 + "QUI=", False),
    "1026 bytes": ("QUJD" * 342, False),
    "1024 bytes after 5000 spaces": ("YQ==" + " " * 5000 + "YQ==" * 1023, True),
}


@pytest.mark.parametrize(
    ("value", "accepted"), BINARY_AT_THE_BOUND.values(), ids=list(BINARY_AT_THE_BOUND)
)
def test_the_binary_length_bound_agrees_with_dynamodb_local(
    ddb: Any, ddb_local: Any, value: str, accepted: bool
) -> None:
    table = "arbitrary_binary_bound"
    pages = ddb.get_paginator("list_tables").paginate()
    if table not in {n for page in pages for n in page["TableNames"]}:
        ddb.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "B"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    key = {"pk": {"S": "p"}, "sk": {"B": value}}
    assert _dynamodb_accepts(ddb_local.endpoint_url, table, key) is accepted
    try:
        _map("B")(value)
        ours = True
    except records.Unmappable:
        ours = False
    assert ours is accepted


def _dynamodb_accepts(endpoint_url: str, table: str, key: dict[str, Any]) -> bool:
    """A BatchWriteItem delete of ``key`` spelled exactly so (boto3 would re-encode it)."""
    import http.client  # here, not with the module's imports (another owner's lines)
    import urllib.parse

    url = urllib.parse.urlparse(endpoint_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    body = {"RequestItems": {table: [{"DeleteRequest": {"Key": key}}]}}
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        "X-Amz-Date": "20260101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=0",  # checked by no one
    }
    try:
        connection.request("POST", "/", body=json.dumps(body).encode(), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    finally:
        connection.close()
