"""DynamoDB Local as the oracle for the scavenger's key checks.

A key the scavenger accepts but DynamoDB rejects is reported on every replay and
blocks the shard; a key it rejects but DynamoDB accepts is a lost delete; two
spellings DynamoDB reads as one item must get one ``Identity`` (sent once), and two
items must never be merged. So for generated number, string and binary values, in
the partition and the sort key, this module asks DynamoDB Local and compares.

**Like with like.** A stream record carries a key as JSON text (numbers as strings,
binaries as base64). The scavenger passes ``S`` and ``N`` strings on unchanged
(boto3 writes them with ``json.dumps``, so a lone surrogate travels as ``"\\ud800"``
exactly as it came), but it decodes ``B`` itself and boto3 sends canonical base64 of
the bytes. So the oracle sends each value *exactly as it appears in the record*,
as raw JSON over HTTP (``json.dumps`` of the value, what both the stream and boto3
write), and asks:

- **accepted?** a ``BatchWriteItem`` holding one ``DeleteRequest`` for the spelling
  answers 200 (the scavenger's own API; 400 and 500 are both a refusal);
- **which item?** each accepted spelling is put in turn with ``ReturnValues=ALL_OLD``
  and a tag; the old item a put replaces names the earlier spelling of the same item.
  (The ``BatchWriteItem`` duplicate check is not used for sameness: DynamoDB Local
  compares strings there, not the bytes it stores, so ``"\\ud800"`` and ``"?"``, one
  item to ``GetItem``, pass it as two.)

and then runs the real ``Scavenger.handle`` over records of every spelling with a
boto3 client: no failure reported, one delete sent per item, every item gone.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_scavenger.local.dynamodb_local import local_client
from stream_scavenger.runtime.scavenger import records
from stream_scavenger.runtime.scavenger.config import ScavengerConfig, TargetConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger
from testkit.events import Context, record
from testkit.tables import CountingClient

pytestmark = pytest.mark.ddb

_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    # DynamoDB Local wants a signed-looking request; it checks no signature.
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0"
    ),
    "X-Amz-Date": "20260101T000000Z",
}
FIXED_PK = "oracle"
_runs = itertools.count()


class Oracle:
    """Raw DynamoDB JSON over one keep-alive HTTP connection to DynamoDB Local."""

    def __init__(self, endpoint_url: str) -> None:
        url = urlparse(endpoint_url)
        self._address = (url.hostname or "127.0.0.1", url.port or 80)
        self._conn = http.client.HTTPConnection(*self._address, timeout=60)
        self.requests = 0
        #: What the scavenger uses: boto3, which re-encodes binaries as canonical base64.
        self.client = local_client("dynamodb", endpoint_url)

    def call(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode()  # ensure_ascii: what boto3 and the stream write
        headers = {**_HEADERS, "X-Amz-Target": f"DynamoDB_20120810.{operation}"}
        self.requests += 1
        for attempt in (1, 2):
            try:
                self._conn.request("POST", "/", body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw or b"{}")
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = http.client.HTTPConnection(*self._address, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def accepts(self, table: str, key: dict[str, Any]) -> bool:
        """Does DynamoDB take this key, spelled exactly so, in a BatchWriteItem delete?"""
        status, body = self.call(
            "BatchWriteItem", {"RequestItems": {table: [{"DeleteRequest": {"Key": key}}]}}
        )
        if status == 200:
            return True
        kind = str(body.get("__type", ""))
        # Invalid base64 is a 500 InternalFailure in DynamoDB Local (a 400 in AWS).
        assert kind.endswith(
            ("ValidationException", "InternalFailure", "SerializationException")
        ), (
            status,
            body,
        )
        return False

    def items(self, table: str, keys: Sequence[dict[str, Any]]) -> list[int]:
        """For each (accepted) key, the index of the first key naming the same item."""
        run = f"run{next(_runs)}"
        first: list[int] = []
        for index, key in enumerate(keys):
            status, body = self.call(
                "PutItem",
                {
                    "TableName": table,
                    "Item": {**key, "run": {"S": run}, "tag": {"N": str(index)}},
                    "ReturnValues": "ALL_OLD",
                },
            )
            assert status == 200, body
            old = body.get("Attributes", {})
            if old.get("run") == {"S": run}:
                first.append(first[int(old["tag"]["N"])])
            else:
                first.append(index)
        return first

    def present(self, table: str, key: dict[str, Any]) -> bool:
        status, body = self.call("GetItem", {"TableName": table, "Key": key})
        assert status == 200, body
        return "Item" in body


@dataclass(frozen=True)
class Slot:
    """One oracle table: where the value under test sits, and the scavenger's config."""

    table: str
    type_: str
    position: str  # "partition" or "sort"

    def key(self, value: Any) -> dict[str, Any]:
        if self.position == "partition":
            return {"pk": {self.type_: value}}
        return {"pk": {"S": FIXED_PK}, "sk": {self.type_: value}}

    @property
    def config(self) -> ScavengerConfig:
        if self.position == "partition":
            return ScavengerConfig.single(
                target_table=self.table, key_mapping={"pk": "pk"}, key_types={"pk": self.type_}
            )
        return ScavengerConfig.single(
            target_table=self.table,
            key_mapping={"pk": "pk", "sk": "sk"},
            key_types={"pk": "S", "sk": self.type_},
            sort_key="sk",
        )

    @property
    def target(self) -> TargetConfig:
        return self.config.targets[0]


SLOTS = [Slot(f"oracle_{p[0]}{t}", t, p) for p in ("partition", "sort") for t in ("S", "N", "B")]


@pytest.fixture(scope="module")
def oracle(ddb_local: Any) -> Oracle:
    oracle = Oracle(ddb_local.endpoint_url)
    for slot in SLOTS:
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attributes = [{"AttributeName": "pk", "AttributeType": slot.type_}]
        if slot.position == "sort":
            schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
            attributes = [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": slot.type_},
            ]
        status, body = oracle.call(
            "CreateTable",
            {
                "TableName": slot.table,
                "KeySchema": schema,
                "AttributeDefinitions": attributes,
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
        assert status == 200, body
    return oracle


def delivered(slot: Slot, value: Any) -> dict[str, Any]:
    """A stream record naming ``value``, as Lambda hands it over (parsed from JSON text)."""
    return json.loads(json.dumps(record("INSERT", slot.key(value), raw=True)))


def scavenger_verdict(slot: Slot, value: Any) -> records.Identity | None:
    try:
        return records.map_record(delivered(slot, value), slot.target).identity
    except records.Unmappable:
        return None


def disagreements(slot: Slot, oracle: Oracle, values: Iterable[Any]) -> list[str]:
    """Where the scavenger's accept/reject differs from DynamoDB's, one line each."""
    found = []
    for value in values:
        theirs = oracle.accepts(slot.table, slot.key(value))
        ours = scavenger_verdict(slot, value) is not None
        if ours != theirs:
            shown = (
                ascii(value) if len(value) < 60 else f"{ascii(value[:12])}... ({len(value)} chars)"
            )
            verdict = {True: "accepts", False: "rejects"}
            found.append(
                f"{slot.position} {slot.type_} {shown}: "
                f"DynamoDB {verdict[theirs]}, scavenger {verdict[ours]}"
            )
    return found


def check_against_oracle(slot: Slot, oracle: Oracle, values: list[str]) -> None:
    """The whole comparison for one example: accept/reject, sameness, a real invocation."""
    values = list(dict.fromkeys(values))  # one request per distinct spelling
    ours = {v: scavenger_verdict(slot, v) for v in values}
    theirs = {v: oracle.accepts(slot.table, slot.key(v)) for v in values}
    wrong = [v for v in values if (ours[v] is not None) != theirs[v]]
    assert not wrong, "accept/reject differs from DynamoDB: " + ", ".join(
        f"{ascii(v)[:80]} (DynamoDB {'accepts' if theirs[v] else 'rejects'})" for v in wrong
    )

    accepted = [v for v in values if theirs[v]]
    first = oracle.items(slot.table, [slot.key(v) for v in accepted])
    for i, a in enumerate(accepted):
        for j, b in enumerate(accepted[:i]):
            same_item = first[i] == first[j]
            same_identity = ours[a] == ours[b]
            assert same_item == same_identity, (
                f"{ascii(a)[:80]} and {ascii(b)[:80]}: DynamoDB "
                f"{'one item' if same_item else 'two items'}, scavenger "
                f"{'one identity' if same_identity else 'two identities'}"
            )

    # A real invocation (boto3 re-encodes what the scavenger sends): every spelling of
    # every item, one delete per item, nothing reported, every item gone.
    client = CountingClient(oracle.client)
    scav = Scavenger(slot.config, client, sleep=lambda s: None)
    batch = {"Records": [delivered(slot, v) for v in values]}
    assert scav.handle(batch, Context()) == {"batchItemFailures": []}
    items = sorted(set(first))
    assert sum(client.calls) == len(items), "one delete per item DynamoDB sees"
    assert scav.last_summary.unmappable == len(values) - len(accepted)
    left = [accepted[i] for i in items if oracle.present(slot.table, slot.key(accepted[i]))]
    assert not left, f"not deleted: {[ascii(v)[:80] for v in left]}"


# ---- numbers -------------------------------------------------------------------------------

ODD_NUMBERS = [
    *("1.", ".5", "+1", "-0", "1e5", "1E+05", "01", "00.100", "-.5", "+.5", "1.e5", "1E5"),
    *(" 1", "1 ", "\t1", "1\n", "1_000", "_1", "1,000", "0x10", "1e5.0", "1e5e5", "1..0"),
    *(".", "+", "-", "e5", "1e", "1e+", ".e5", "--1", "+-1", "", " ", "\x00", "1\x00"),
    *("NaN", "nan", "Infinity", "-Infinity", "inf", "\u22121", "\uff0b1"),
    # non-ASCII digits: BMP decimal digits, astral ones, superscripts, fullwidth
    *("\u0663", "\u0661\u0662\u0663", "1\u0663", "\uff11", "\u0661.\u0662e\u0663", "1e\u0663"),
    *("\U0001d7cf", "1\U0001d7ce", "1e\U0001d7cf", "\u00b2", "1\u00b2", "1e\u00b2", "\u2460"),
    # precision and magnitude at and past the limits
    *("1" * 38, "1" * 39, "1" * 38 + "0" * 100, "0" * 500 + "1", "1" + "0" * 125, "1" + "0" * 126),
    *("1e-130", "1e-131", "1.0e-130", "10e-131", "9.9e125", "1e126", "1E126", "1e+125"),
    *("9" * 38 + "e87", "9" * 38 + "e88", "9." + "9" * 37 + "e125", "9." + "9" * 38 + "e125"),
    *("1." + "0" * 36 + "1e-130", "1." + "0" * 37 + "1e-130", "-1e-130", "-1e126", "-9.9e125"),
    *("0." + "0" * 129 + "1", "0." + "0" * 130 + "1", "1" * 39 + "e-200", "0" * 60 + "1" * 38),
    # exponents near Java's int range (DynamoDB parses with BigDecimal)
    *("0e2147483647", "0e2147483648", "0e-2147483647", "0e-2147483648", "0.0e-2147483647"),
    *("0E+2147483647", "0.00e-2147483646", "0.00e-2147483645", "1e2147483647", "1e-2147483648"),
    *("1e00000000000000005", "0e00000000002147483647", "0e0000000000002147483648"),
    *("1e" + "9" * 100, "0e" + "9" * 100, "1e-" + "9" * 100, "0e" + "0" * 100),
    # long digit strings
    *("0" * 5000 + "1", "1" + "0" * 5000, "0." + "0" * 5000, "1" * 5000 + "x", "0" * 5000),
    *("0." + "0" * 5000 + "1", "1" * 5000, "0" * 5000 + "1" * 38 + "0" * 5000 + "e-5000"),
]

ASCII_DIGITS = "0123456789"
#: Digits in other scripts: BMP decimal digits (Arabic-Indic, Devanagari, fullwidth) and
#: astral ones (mathematical bold, Tangsa), and look-alikes that are not decimal digits.
OTHER_DIGITS = (
    "\u0660\u0663\u0669\u0966\u096f\uff10\uff19\U0001d7ce\U0001d7d7\U00016ac1\u00b2\u2460"
)
JUNK = [" ", "\t", "\n", "_", ",", "x", "\x00", "\u00a0", "e", ".", "+", "-", "\u2212"]


def _digits(min_size: int = 0, max_size: int = 45) -> st.SearchStrategy[str]:
    ascii_run = st.text(ASCII_DIGITS, min_size=min_size, max_size=max_size)
    mixed = st.text(
        st.sampled_from(ASCII_DIGITS * 4 + OTHER_DIGITS), min_size=min_size, max_size=max_size
    )
    return st.one_of(ascii_run, ascii_run, mixed)


@st.composite
def structured_numbers(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "", "+", "-"]))
    whole = draw(_digits())
    dot = draw(st.sampled_from(["", "", "."]))
    frac = draw(_digits()) if dot else ""
    if draw(st.booleans()):
        limit = draw(
            st.sampled_from(
                [0, 1, 5, 87, 88, 124, 125, 126, 127, 129, 130, 131, 132, 168, 169, 2147483647]
            )
        )
        exp_digits = str(limit + draw(st.integers(-2, 2)))
        if exp_digits.startswith("-"):
            exp_digits = exp_digits[1:]
        if draw(st.booleans()):
            exp_digits = draw(_digits(min_size=0, max_size=12))
        exponent = (
            draw(st.sampled_from("eE"))
            + draw(st.sampled_from(["", "+", "-", "-"]))
            + "0" * draw(st.sampled_from([0, 0, 1, 9]))
            + exp_digits
        )
    else:
        exponent = ""
    text = sign + whole + dot + frac + exponent
    if draw(st.integers(0, 4)) == 0:  # a stray character somewhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(JUNK)) + text[at:]
    return text


@st.composite
def near_limit_numbers(draw: st.DrawFn) -> str:
    """Numbers with 36..40 significant digits and a magnitude at DynamoDB's ends."""
    count = draw(st.integers(36, 40))
    digits = draw(st.sampled_from("123456789")) + draw(
        st.text(ASCII_DIGITS, min_size=count - 2, max_size=count - 2)
    )
    digits += draw(st.sampled_from("123456789"))
    adjusted = draw(st.sampled_from([-132, -131, -130, -129, -128, 123, 124, 125, 126, 127]))
    point = draw(st.integers(0, len(digits)))  # where the decimal point goes in the digits
    exponent = adjusted - (point - 1)
    mantissa = digits[:point] + "." + digits[point:]
    return draw(st.sampled_from(["", "-"])) + mantissa + draw(st.sampled_from("eE")) + str(exponent)


@st.composite
def respelled_number(draw: st.DrawFn, number: str) -> str:
    """The same number spelled otherwise (only meaningful when ``number`` is valid)."""
    text = number
    mantissa, marker, exponent = text.replace("E", "e").partition("e")
    if draw(st.booleans()) and mantissa[:1] not in "+-":
        mantissa = draw(st.sampled_from(["+", ""])) + mantissa
    sign = mantissa[:1] if mantissa[:1] in "+-" else ""
    body = mantissa[len(sign) :]
    if draw(st.booleans()):
        body = "0" * draw(st.integers(1, 3)) + body
    if draw(st.booleans()):
        body = body + ("" if "." in body else ".") + "0" * draw(st.integers(0, 3))
    if sign == "" and body.strip("0.") == "" and draw(st.booleans()):
        sign = "-"  # -0 is 0
    if draw(st.booleans()):  # shift the point by one, compensate in the exponent
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        small = digits.isascii() and digits.isdigit() and len(digits) < 11
        exp_value = int(exponent) if small else 0
        if "." not in body:
            body += "."
        at = body.index(".")
        if at > 0:
            body = body[: at - 1] + "." + body[at - 1] + body[at + 1 :]
            exponent, marker = str(exp_value + 1), "e"
    if draw(st.booleans()):  # Arabic-Indic digits for the ASCII ones
        body = body.translate(
            str.maketrans(
                ASCII_DIGITS, "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
            )
        )
    marker = draw(st.sampled_from("eE")) if marker else ""
    return sign + body + marker + exponent


# ---- strings -------------------------------------------------------------------------------

SPECIAL_CHARS = [
    "\x00",
    "?",
    "\ufffd",
    "\ufeff",
    "\u200b",
    " ",
    "\t",
    "e\u0301",
    "\u00e9",
    "\u212b",
    "\u00c5",
    "A\u030a",
    "\U0001f600",
    "\U0010ffff",
    "\U00010000",
    "\u0663",
    "\uffff",
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
]
#: One character of each UTF-8 width (and lone surrogates, one byte to DynamoDB Local).
UNITS = ["a", "\u00e9", "\u20ac", "\U0001f600", "\ud800", "\udc00", "?", "\x00"]


def _chars() -> st.SearchStrategy[str]:
    return st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),  # lone surrogates, delivered as "\ud800" escapes
        st.characters(categories=["Mn"]),  # combining marks
        st.sampled_from(SPECIAL_CHARS),
    )


@st.composite
def sized_strings(draw: st.DrawFn, limit: int) -> str:
    """Strings whose size is a few bytes either side of ``limit`` (2048 or 1024)."""
    unit = draw(st.sampled_from(UNITS))
    width = len(unit.encode("utf-8", "replace"))  # a lone surrogate counts as "?"
    tail = draw(st.text(st.sampled_from(["a", "\u00e9", "\ud800"]), max_size=3))
    target = limit + draw(st.integers(-4, 4)) - len(tail.encode("utf-8", "replace"))
    return unit * max(target // width, 0) + tail


@st.composite
def respelled_string(draw: st.DrawFn, text: str) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return unicodedata.normalize("NFD", text)
    if choice == 1:
        return unicodedata.normalize("NFC", text)
    if choice == 2:  # a lone surrogate for each "?", or "?" for each lone surrogate
        if "?" in text:
            return text.replace("?", draw(st.sampled_from(["\ud800", "\udfff"])))
        return "".join("?" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text + draw(st.sampled_from(["", "\x00", " "]))


# ---- binary --------------------------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WHITESPACE = [" ", "\n", "\r\n", "\t", "\x00", "\x1f", "\x0b", "\x7f", "\u00a0", "\u2028"]


@st.composite
def sized_binary(draw: st.DrawFn, limit: int) -> bytes:
    return draw(st.binary(min_size=limit - 3, max_size=limit + 3))


@st.composite
def spelled_binary(draw: st.DrawFn, data: bytes) -> str:
    """``data`` in base64, canonical or not (each variant also mixed with the others)."""
    text = base64.b64encode(data).decode()
    kinds = draw(
        st.lists(
            st.sampled_from(
                [
                    "canonical",
                    "unpadded",
                    "pad bits",
                    "urlsafe",
                    "whitespace",
                    "chunks",
                    "extra pad",
                    "stray",
                    "non-ascii",
                    "lower",
                ]
            ),
            max_size=2,
        )
    )
    for kind in kinds:
        if kind == "unpadded":
            text = text.rstrip("=")
        elif kind == "pad bits" and text.endswith("=") and (text.rstrip("=") or "!")[-1] in B64:
            at = len(text.rstrip("=")) - 1
            bits = B64.index(text[at]) | draw(st.integers(1, 15 if text.endswith("==") else 3))
            text = text[:at] + B64[bits % 64] + text[at + 1 :]
        elif kind == "urlsafe":
            text = text.replace("+", "-").replace("/", "_")
        elif kind == "whitespace":
            quad = draw(st.booleans())
            at = (
                4 * draw(st.integers(0, len(text) // 4))
                if quad
                else draw(st.integers(0, len(text)))
            )
            text = (
                text[:at] + draw(st.sampled_from(WHITESPACE)) * draw(st.integers(1, 3)) + text[at:]
            )
        elif kind == "chunks" and len(data) > 1:  # padding in the middle: "YQ==YQ=="
            cut = draw(st.integers(1, len(data) - 1))
            text = base64.b64encode(data[:cut]).decode() + base64.b64encode(data[cut:]).decode()
        elif kind == "extra pad":
            text += "=" * draw(st.integers(1, 2))
        elif kind == "stray":
            at = draw(st.integers(0, len(text)))
            text = (
                text[:at]
                + draw(st.sampled_from(["!", "=", ".", "-", "\u00e9", "\ud800"]))
                + text[at:]
            )
        elif kind == "non-ascii":
            text = text.translate(str.maketrans("AQgw", "\uff21\uff31\uff47\uff57"))
        elif kind == "lower":
            text = text.lower()
    return text


ODD_BINARY = [
    *("YQ==", "YQ", "YQ=", "YR==", "YWI=", "YWJ=", "YWI", " YQ==", "YQ== ", "Y Q==", "YQ==\n"),
    *("-_8=", "+/8=", "////", "____", "YQ==YQ==", "YQ== YQ==", "=", "====", "", "Y", "YWJj"),
    *("YWJjZA", "YQ==\r\n", "!!not base64!!", "\u00e9\u00e9\u00e9\u00e9", "AA==", "AAA="),
    *("Y===", "YW==", "YWJ\ud800", "\uff15\uff15\uff15\uff15", "  ", "\n", "\x00", "\x00YQ=="),
    *("YQ==\x00", "YQ===", "\x7fYQ==", "YQ==\x7f", "YQ==\u00a0", "\u2028YQ==", "Y\x00Q=="),
    *("YWJj\x1fYWJj", "YQ=\n=", "YQ\n==", "A" * 2732, "A" * 2736, "A" * 1364, "A" * 1368),
]

# ---- the properties ------------------------------------------------------------------------


def _limit(slot: Slot) -> int:
    return (
        records.MAX_SORT_KEY_BYTES if slot.position == "sort" else records.MAX_PARTITION_KEY_BYTES
    )


@st.composite
def number_groups(draw: st.DrawFn) -> list[str]:
    """A few numbers, each with a few spellings."""
    values: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        number = draw(
            st.one_of(st.sampled_from(ODD_NUMBERS), structured_numbers(), near_limit_numbers())
        )
        values.append(number)
        for _ in range(draw(st.integers(0, 2))):
            values.append(draw(respelled_number(number)))
    return values[:8]


@st.composite
def string_groups(draw: st.DrawFn, limit: int) -> list[str]:
    values: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        text = draw(
            st.one_of(
                st.lists(_chars(), max_size=12).map("".join),
                st.lists(_chars(), min_size=1, max_size=4).map("".join),
                sized_strings(limit),
            )
        )
        values.append(text)
        for _ in range(draw(st.integers(0, 2))):
            values.append(draw(respelled_string(text)))
    return values[:8]


@st.composite
def binary_groups(draw: st.DrawFn, limit: int) -> list[str]:
    values: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 6)) == 0:
            values.append(draw(st.sampled_from(ODD_BINARY)))
            continue
        data = draw(st.one_of(st.binary(max_size=12), st.binary(max_size=3), sized_binary(limit)))
        for _ in range(draw(st.integers(1, 3))):
            values.append(draw(spelled_binary(data)))
    return values[:8]


_PROPERTY = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.mark.parametrize("slot", [s for s in SLOTS if s.type_ == "N"], ids=lambda s: s.position)
@_PROPERTY
@given(data=st.data())
def test_numbers_agree_with_dynamodb(oracle: Oracle, slot: Slot, data: st.DataObject) -> None:
    check_against_oracle(slot, oracle, data.draw(number_groups()))


@pytest.mark.parametrize("slot", [s for s in SLOTS if s.type_ == "S"], ids=lambda s: s.position)
@_PROPERTY
@given(data=st.data())
def test_strings_agree_with_dynamodb(oracle: Oracle, slot: Slot, data: st.DataObject) -> None:
    check_against_oracle(slot, oracle, data.draw(string_groups(_limit(slot))))


@pytest.mark.parametrize("slot", [s for s in SLOTS if s.type_ == "B"], ids=lambda s: s.position)
@_PROPERTY
@given(data=st.data())
def test_binaries_agree_with_dynamodb(oracle: Oracle, slot: Slot, data: st.DataObject) -> None:
    check_against_oracle(slot, oracle, data.draw(binary_groups(_limit(slot))))


# ---- fixed corpora: every odd spelling named above, each asked once -------------------------


def _string_corpus(limit: int) -> list[str]:
    corpus = [*SPECIAL_CHARS, "", "a\x00b", "\ud800\udc00", "\udc00\ud800", "x\ud800y"]
    for unit in UNITS:
        width = len(unit.encode("utf-8", "replace"))
        corpus += [unit * (limit // width), unit * (limit // width + 1)]
    return corpus


@pytest.mark.parametrize("slot", SLOTS, ids=lambda s: f"{s.position}-{s.type_}")
def test_the_odd_spellings_agree_with_dynamodb(oracle: Oracle, slot: Slot) -> None:
    corpus = {
        "N": ODD_NUMBERS,
        "S": _string_corpus(_limit(slot)),
        "B": ODD_BINARY
        + [base64.b64encode(b"x" * n).decode() for n in (1023, 1024, 1025, 2047, 2048, 2049)],
    }[slot.type_]
    found = disagreements(slot, oracle, corpus)
    assert not found, "\n".join(found)


def test_every_unicode_decimal_digit_agrees_with_dynamodb(oracle: Oracle) -> None:
    """All 66 runs of ten decimal digits Unicode has (37 in the BMP, 29 astral)."""
    slot = SLOTS[1]  # partition N
    zeros = [
        c
        for c in range(0x110000)
        if unicodedata.category(chr(c)) == "Nd" and unicodedata.decimal(chr(c)) == 0
    ]
    runs = ["1" + "".join(chr(zero + i) for i in range(10)) for zero in zeros]
    found = disagreements(slot, oracle, runs)
    assert not found, "\n".join(found)
    for run in runs:
        if scavenger_verdict(slot, run) is not None:
            assert scavenger_verdict(slot, run) == scavenger_verdict(slot, "10123456789")


def test_the_oracle_requests_stay_few(oracle: Oracle) -> None:
    """A guard on the property's cost: one example asks at most a few dozen requests."""
    slot = SLOTS[0]
    before = oracle.requests
    check_against_oracle(slot, oracle, ["a", "a\u0301", "\u00e1", "?", "\ud800", "", "b", "c"])
    assert oracle.requests - before <= 3 * 8 + 1
