"""A corpus of malformed and unusual events, each with its expected outcome.

Outcomes: a bad record is either *unmappable* (retrying cannot change it: counted,
logged with its sequence number, not reported, so it cannot block the shard) or
*skipped* (a well-formed record of an unselected event). The good records of the
same batch (``G1`` before the bad one, ``G2`` after it) are always deleted.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest

from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import Scavenger
from testkit.events import Context, record
from testkit.tables import CountingClient, put_items, scan_keys


def good(pk: str) -> dict[str, Any]:
    return record("INSERT", {"pk": pk, "sk": 1})


def raw(pk: Any, sk: Any = {"N": "1"}, **kw: Any) -> dict[str, Any]:  # noqa: B006
    return record("INSERT", {"pk": pk, "sk": sk}, raw=True, **kw)


def mutated(change: Any) -> dict[str, Any]:
    r = good("bad")
    change(r)
    return r


@dataclass
class Case:
    name: str
    bad: list[Any]  # records between G1 and G2
    unmappable: int = 0
    skipped: int = 0
    deleted: tuple[str, ...] = ()  # keys of the bad records that must be deleted too


SQS_RECORD = {
    "messageId": "1",
    "body": "{}",
    "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
}
KINESIS_RECORD = {
    "eventSource": "aws:kinesis",
    "eventName": "aws:kinesis:record",
    "kinesis": {"data": base64.b64encode(b"{}").decode(), "sequenceNumber": "1"},
}
NO_SEQUENCE = good("console")
del NO_SEQUENCE["dynamodb"]["SequenceNumber"]
BIG_IMAGE = "x" * 4000

CORPUS = [
    Case("record is a string", ["not a record"], unmappable=1),
    Case("record is null", [None], unmappable=1),
    Case("record without dynamodb", [mutated(lambda r: r.pop("dynamodb"))], unmappable=1),
    Case("dynamodb is a list", [mutated(lambda r: r.update(dynamodb=[]))], unmappable=1),
    Case("record without Keys", [mutated(lambda r: r["dynamodb"].pop("Keys"))], unmappable=1),
    Case("Keys is a list", [mutated(lambda r: r["dynamodb"].update(Keys=[]))], unmappable=1),
    Case("mapped attribute missing", [raw({"S": "nosk"}, sk=None) | {}], unmappable=1),
    Case("sort key of the wrong type", [raw({"S": "wrong"}, {"S": "1"})], unmappable=1),
    Case("partition key of a non-key type", [raw({"SS": ["a", "b"]})], unmappable=1),
    Case("NULL key value", [raw({"NULL": True})], unmappable=1),
    Case("two types in one value", [raw({"S": "a", "N": "1"})], unmappable=1),
    Case("S value that is not a string", [raw({"S": 5})], unmappable=1),
    Case("empty string key", [raw({"S": ""})], unmappable=1),
    Case("unknown eventName", [mutated(lambda r: r.update(eventName="UPSERT"))], unmappable=1),
    Case(
        "eventName in lower case", [mutated(lambda r: r.update(eventName="insert"))], unmappable=1
    ),
    Case("no eventName", [mutated(lambda r: r.pop("eventName"))], unmappable=1),
    Case("unselected MODIFY", [mutated(lambda r: r.update(eventName="MODIFY"))], skipped=1),
    Case("SQS record", [SQS_RECORD], unmappable=1),
    Case("Kinesis record", [KINESIS_RECORD], unmappable=1),
    Case("console test event without SequenceNumber", [NO_SEQUENCE], deleted=("console",)),
    Case("unicode key", [good("ключ 🔑 キー")], deleted=("ключ 🔑 キー",)),
    Case("2048-byte partition key (the limit)", [good("é" * 1024)], deleted=("é" * 1024,)),
    Case("2049-byte partition key", [good("é" * 1024 + "x")], unmappable=1),
    Case("number with 38 digits", [raw({"S": "n38"}, {"N": "9" * 38})], deleted=("n38",)),
    Case("number with 39 significant digits", [raw({"S": "n39"}, {"N": "1" * 39})], unmappable=1),
    Case("number too large", [raw({"S": "big"}, {"N": "1e126"})], unmappable=1),
    Case("NaN", [raw({"S": "nan"}, {"N": "NaN"})], unmappable=1),
    Case("number with an underscore", [raw({"S": "und"}, {"N": "1_000"})], unmappable=1),
    Case("number with spaces", [raw({"S": "spc"}, {"N": " 1"})], unmappable=1),
    # Numbers as DynamoDB parses them (Java's BigDecimal; tests/test_key_oracle.py asks it).
    Case(
        "number in Arabic-Indic digits",
        [raw({"S": "arabic"}, {"N": "\u0661"})],
        deleted=("arabic",),
    ),
    Case("number with an astral digit", [raw({"S": "astral"}, {"N": "\U0001d7cf"})], unmappable=1),
    Case("number with a superscript", [raw({"S": "sup"}, {"N": "\u00b2"})], unmappable=1),
    Case(
        "zero, exponent past a 32-bit int", [raw({"S": "z"}, {"N": "0e2147483648"})], unmappable=1
    ),
    Case(
        "a million-digit malformed number",
        [raw({"S": "m"}, {"N": "1" * 10**6 + "x"})],
        unmappable=1,
    ),
    Case("a huge exponent", [raw({"S": "e"}, {"N": "1e" + "9" * 100_000})], unmappable=1),
    Case("number spelled 1.", [raw({"S": "one."}, {"N": "1."})], deleted=("one.",)),
    Case("number spelled +01e0", [raw({"S": "+01e0"}, {"N": "+01e0"})], deleted=("+01e0",)),
    Case(
        "2048 lone surrogates (one byte each)", [good("\ud800" * 2048)], deleted=("\ud800" * 2048,)
    ),
    Case("2049 lone surrogates", [good("\ud800" * 2049)], unmappable=1),
    Case("non-digit sequence number", [good("seq") | {}], deleted=("seq",)),
]
CORPUS[-1].bad[0]["dynamodb"]["SequenceNumber"] = "shard-abc"


@pytest.fixture(scope="module")
def corpus_table(ddb: Any) -> str:
    ddb.create_table(
        TableName="corpus",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return "corpus"


def scavenger(ddb: Any, table: str, **kw: Any) -> tuple[Scavenger, CountingClient]:
    config = ScavengerConfig.single(
        target_table=table,
        key_mapping={"pk": "pk", "sk": "sk"},
        key_types={"pk": "S", "sk": "N"},
        sort_key="sk",
        **kw,
    )
    client = CountingClient(ddb)
    return Scavenger(config, client, sleep=lambda s: None), client


def test_corpus_has_at_least_25_cases() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_bad_record_never_costs_the_good_ones(ddb: Any, corpus_table: str, case: Case) -> None:
    tag = str(abs(hash(case.name)))
    g1, g2 = f"G1-{tag}", f"G2-{tag}"
    put_items(ddb, corpus_table, [{"pk": k, "sk": 1} for k in (g1, g2)])
    for key in case.deleted:
        sk = 9 * int("1" * 38) if key == "n38" else 1
        put_items(ddb, corpus_table, [{"pk": key, "sk": sk}])
    scav, _ = scavenger(ddb, corpus_table)

    response = scav.handle({"Records": [good(g1), *case.bad, good(g2)]}, Context())

    assert response == {"batchItemFailures": []}, "nothing here can be helped by a replay"
    present = {pk for (pk,) in scan_keys(ddb, corpus_table, ["pk"])}
    assert not present & {g1, g2, *case.deleted}
    summary = scav.last_summary
    assert (summary.unmappable, summary.skipped) == (case.unmappable, case.skipped)
    assert summary.matched == 2 + len(case.deleted)


@pytest.mark.parametrize(
    "event",
    [{"Records": []}, {}, None, [], "text", {"Records": {"not": "a list"}}, {"Records": None}],
    ids=[
        "empty Records",
        "no Records",
        "null event",
        "list event",
        "string event",
        "Records a dict",
        "Records null",
    ],
)
def test_events_without_records_do_nothing_and_do_not_fail(
    ddb: Any, corpus_table: str, event: Any
) -> None:
    scav, client = scavenger(ddb, corpus_table)
    assert scav.handle(event, Context()) == {"batchItemFailures": []}
    assert client.calls == []


def test_sort_key_limit_is_1024_bytes(ddb: Any, make_table: Any) -> None:
    table = make_table({"pk": "S", "sk": "S"})
    put_items(ddb, table, [{"pk": "a", "sk": "s" * 1024}])
    config = ScavengerConfig.single(
        target_table=table,
        key_mapping={"pk": "pk", "sk": "sk"},
        key_types={"pk": "S", "sk": "S"},
        sort_key="sk",
    )
    scav = Scavenger(config, ddb, sleep=lambda s: None)

    response = scav.handle(
        {
            "Records": [
                record("INSERT", {"pk": "a", "sk": "s" * 1024}),
                record("INSERT", {"pk": "a", "sk": "s" * 1025}),
            ]
        },
        Context(),
    )

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()
    assert (scav.last_summary.matched, scav.last_summary.unmappable) == (1, 1)


@pytest.mark.parametrize(
    "value",
    ["", "!!not base64!!", "YQ", "Y Q==", "-_8=", "YQ===", "  ", "\u00e9\u00e9\u00e9\u00e9"],
    ids=[
        "empty binary",
        "invalid base64",
        "missing padding",
        "space inside a group",
        "URL-safe alphabet",
        "extra padding",
        "only whitespace",
        "non-ASCII",
    ],
)
def test_bad_binary_keys_are_unmappable(ddb: Any, make_table: Any, value: str) -> None:
    table = make_table({"pk": "B"})
    put_items(ddb, table, [{"pk": b"ok"}])
    scav = Scavenger(
        ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, key_types={"pk": "B"}),
        ddb,
        sleep=lambda s: None,
    )

    response = scav.handle(
        {
            "Records": [
                record("INSERT", {"pk": {"B": value}}, raw=True),
                record("INSERT", {"pk": b"ok"}),
            ]
        },
        Context(),
    )

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()
    assert scav.last_summary.unmappable == 1


def test_a_6_mb_event_is_processed_whole(ddb: Any, make_table: Any) -> None:
    table = make_table({"pk": "S"})
    keys = [f"big{i}" for i in range(1500)]
    put_items(ddb, table, [{"pk": k} for k in keys])
    records = [record("INSERT", {"pk": k}, new={"pk": k, "blob": BIG_IMAGE}) for k in keys]
    scav = Scavenger(
        ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}),
        ddb,
        sleep=lambda s: None,
    )
    import json

    assert len(json.dumps({"Records": records})) > 6_000_000

    response = scav.handle({"Records": records}, Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()


class _DeletesNothing:
    """Answers every BatchWriteItem with all of its items left unprocessed."""

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        return {"UnprocessedItems": kwargs["RequestItems"]}


def _failing_scavenger() -> Scavenger:
    config = ScavengerConfig.single(
        target_table="corpus", key_mapping={"pk": "pk"}, key_types={"pk": "S"}, max_attempts=1
    )
    return Scavenger(config, _DeletesNothing(), sleep=lambda s: None)


def test_reported_sequence_numbers_of_any_spelling_sort_without_error() -> None:
    spellings = [
        "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "\u0663",  # Arabic-Indic three: not an ASCII digit, so not a number to compare
        "1" * 5000,  # more digits than int() converts (4300)
        "00012",
        "9",
        "12",
        "shard-abc",
        "9" * 40,
        "\ud800",
    ]
    batch = {
        "Records": [
            record("INSERT", {"pk": f"k{i}"}, sequence_number=s) for i, s in enumerate(spellings)
        ]
    }

    response = _failing_scavenger().handle(batch, Context())

    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    # ASCII digit strings first, in numeric order; then the others, as strings.
    assert reported == [
        "9",
        "00012",
        "12",
        "9" * 40,
        "1" * 5000,
        "shard-abc",
        "\u00b2",
        "\u0663",
        "\ud800",
    ]


@pytest.mark.parametrize("sequence_number", [5, 1.5, None, "", ["1"], {"n": "1"}, True], ids=repr)
def test_a_failed_record_without_a_string_sequence_number_fails_the_invocation(
    sequence_number: Any,
) -> None:
    from stream_scavenger.runtime.scavenger.handler import UnreportableFailure

    bad = record("INSERT", {"pk": "k"})
    bad["dynamodb"]["SequenceNumber"] = sequence_number

    with pytest.raises(UnreportableFailure):
        _failing_scavenger().handle({"Records": [record("INSERT", {"pk": "j"}), bad]}, Context())


@pytest.mark.parametrize(
    ("spelling", "data"),
    [
        (" YQ==\n", b"a"),  # whitespace between groups of four
        ("YQ==YQ==", b"aa"),  # a padded group, then more
        ("YR==", b"a"),  # pad bits ignored
        ("YWJ=", b"ab"),
        ("YWJj\x00YWJj", b"abcabc"),  # any character up to U+0020 is whitespace
    ],
)
def test_base64_is_read_as_dynamodb_reads_it(
    ddb: Any, make_table: Any, spelling: str, data: bytes
) -> None:
    table = make_table({"pk": "B"})
    put_items(ddb, table, [{"pk": data}])
    scav = Scavenger(
        ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, key_types={"pk": "B"}),
        ddb,
        sleep=lambda s: None,
    )

    response = scav.handle({"Records": [record("INSERT", {"pk": {"B": spelling}}, raw=True)]})

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()


def test_a_lone_surrogate_names_the_item_dynamodb_stores_with_a_question_mark(
    ddb: Any, make_table: Any
) -> None:
    """DynamoDB stores each lone surrogate (a JSON "\\ud800" escape) as "?": one item."""
    table = make_table({"pk": "S"})
    put_items(ddb, table, [{"pk": "x?y"}, {"pk": "x??"}])
    client = CountingClient(ddb)
    scav = Scavenger(
        ScavengerConfig.single(target_table=table, key_mapping={"pk": "pk"}, key_types={"pk": "S"}),
        client,
        sleep=lambda s: None,
    )
    batch = [
        record("INSERT", {"pk": pk})
        for pk in ("x\ud800y", "x?y", "x\udfffy", "x\udc00\ud800", "x??")
    ]

    response = scav.handle(json.loads(json.dumps({"Records": batch})), Context())

    assert response == {"batchItemFailures": []}
    assert scan_keys(ddb, table, ["pk"]) == set()
    assert client.calls == [2], "two items, each deleted once"
