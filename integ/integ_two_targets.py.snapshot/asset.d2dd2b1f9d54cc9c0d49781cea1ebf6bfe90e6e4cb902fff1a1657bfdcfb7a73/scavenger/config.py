"""The configuration contract between the construct and the scavenger Lambda.

The construct writes these environment variables; the runtime reads them. This
module is the only part of the runtime that the construct side imports, so it
stays free of boto3 and of anything else heavier than the standard library.

Environment variables:

``SCAVENGER_TARGET_TABLE``, ``SCAVENGER_TARGET_TABLE_1``, ``SCAVENGER_TARGET_TABLE_2``, ...
    Names of the first, second, third, ... table whose items are deleted.
``SCAVENGER_CONFIG``
    JSON object of one shape, however many targets: the n-th entry of ``targets``
    describes the table named by the n-th variable above::

        {
          "version": 2,
          "targets": [{"key_mapping": {"<target key attribute>": "<source attribute>", ...},
                       "key_types": {"<target key attribute>": "S" | "N" | "B", ...},
                       "sort_key": "<target sort key attribute>" | null,
                       "event_names": ["INSERT", ...]}, ...],
          "max_concurrency": 8,
          "max_attempts": 8,
          "dry_run": false
        }

    ``key_types`` may be empty when the target's key schema is not known at
    synth time (an imported table); the runtime then accepts S, N and B.

    One shape, one version: the writer (the construct) and the reader (this asset)
    always ship and deploy together, since a function's code and its environment
    change in the same update, so a deployed function never meets an older shape and
    the reader accepts none (version 1, the flat single-target shape, is not read).
``SCAVENGER_LOG_ITEMS``
    ``"true"`` to let debug log lines carry key values. Off by default.

The backfill worker (``backfill=True``; :data:`BACKFILL_HANDLER`) has the variables above
and two more (:class:`BackfillConfig`):

``SCAVENGER_BACKFILL_SOURCE_TABLE``
    The name of the table it scans.
``SCAVENGER_BACKFILL``
    JSON object: ``{"version": 1, "key_names": [...], "view_type": "NEW_IMAGE",
    "event_name": "INSERT", "filters": ["<FilterCriteria pattern>", ...],
    "page_size": 1000, "write_units_per_s": 100 | null, "read_units_per_s": 100 | null}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The one version of ``SCAVENGER_CONFIG`` (see the module docstring).
CONFIG_VERSION = 2
ENV_TARGET_TABLE = "SCAVENGER_TARGET_TABLE"
ENV_CONFIG = "SCAVENGER_CONFIG"
ENV_LOG_ITEMS = "SCAVENGER_LOG_ITEMS"

#: The function's handler, as Lambda names it: the ``scavenger`` package is the asset's root.
HANDLER = "scavenger.handler.handler"
#: The backfill worker's handler, in the same asset.
BACKFILL_HANDLER = "scavenger.backfill.handler"
ENV_BACKFILL = "SCAVENGER_BACKFILL"
ENV_BACKFILL_SOURCE = "SCAVENGER_BACKFILL_SOURCE_TABLE"
BACKFILL_VERSION = 1
#: The worker's event and answer (the state machine passes each answer on as the next
#: event until ``done``): which segment of how many, where its scan goes on (a
#: ``LastEvaluatedKey`` in Lambda's JSON shape; null at the start), where the first page
#: with records not deleted began (the place a later run must start again from), and the
#: counts so far.
BACKFILL_SEGMENT = "segment"
BACKFILL_TOTAL_SEGMENTS = "total_segments"
BACKFILL_START_KEY = "start_key"
BACKFILL_DONE = "done"
BACKFILL_HELD_AT = "held_at"
BACKFILL_TOTALS = "totals"

#: The stream image each event carries its item in (REMOVE: the item as it was).
IMAGE_FOR_EVENT = {"INSERT": "NewImage", "MODIFY": "NewImage", "REMOVE": "OldImage"}
EVENT_NAMES = tuple(IMAGE_FOR_EVENT)
KEY_TYPES = ("S", "N", "B")

#: CloudWatch namespace of the function's own metrics (embedded metric format).
METRICS_NAMESPACE = "StreamScavenger"
#: The one dimension of those metrics: the function's name (never a key).
METRICS_DIMENSION = "FunctionName"
#: The second dimension of the per-target metrics (several targets only): the table's name.
TARGET_DIMENSION = "TargetTable"
#: Metric name -> CloudWatch unit, as the function emits them once per invocation.
METRICS = {
    "RecordsReceived": "Count",
    "RecordsMatched": "Count",
    "RecordsSkipped": "Count",
    "UnmappableRecords": "Count",
    "DuplicateKeys": "Count",
    "KeysDeleted": "Count",
    "RecordsReported": "Count",
    "BatchWriteRequests": "Count",
    "Retries": "Count",
    "UnprocessedItems": "Count",
    "Throttles": "Count",
    "ConsumedWriteCapacity": "Count",
    #: 1 when the invocation ran out of time with keys unconfirmed while the target throttled:
    #: the target is under-provisioned for this stream, not the scavenger failing.
    "ThrottledOut": "Count",
    "BatchLatency": "Milliseconds",
}
#: The metrics also emitted per target (dimensions FunctionName, TargetTable) when a
#: function has several targets; with one target they would repeat the totals.
TARGET_METRICS = (
    "RecordsMatched",
    "UnmappableRecords",
    "DuplicateKeys",
    "KeysDeleted",
    "RecordsReported",
)
#: Targets one function may serve (each adds an environment variable and a config entry;
#: Lambda's environment holds 4 KB).
MAX_TARGETS = 10

#: Requests in flight at once for one invocation.
DEFAULT_MAX_CONCURRENCY = 8
#: Attempts per BatchWriteItem chunk (the first try included) that fail other than by
#: throttling (5xx, dropped connections, answers that confirm nothing) before its keys are
#: reported for replay; throttling is retried while the invocation's time lasts.
DEFAULT_MAX_ATTEMPTS = 8


class ConfigError(ValueError):
    """The environment does not hold a valid scavenger configuration."""


@dataclass(frozen=True)
class Placeholder:
    """``{attribute}`` in a key template."""

    attribute: str


def is_template(mapping_value: str) -> bool:
    """A key_mapping value with a brace is a template; without one, a bare attribute name."""
    return "{" in mapping_value or "}" in mapping_value


def parse_template(template: str) -> tuple[str | Placeholder, ...]:
    """Split a key template into literal text and placeholders.

    Grammar: ``{name}`` is the value of source attribute ``name`` (any characters but
    braces); ``{{`` and ``}}`` are a literal ``{`` and ``}``. Anything else with a brace,
    or an empty ``{}``, raises :class:`ConfigError`.
    """
    parts: list[str | Placeholder] = []
    literal = ""
    index = 0
    while index < len(template):
        char = template[index]
        if char in "{}" and template[index : index + 2] == char * 2:
            literal += char
            index += 2
        elif char == "{":
            end = template.find("}", index)
            name = template[index + 1 : end] if end != -1 else ""
            if end == -1 or not name or "{" in name:
                raise ConfigError(
                    f"key template {template!r}: '{{' at {index} opens no '{{attribute}}' "
                    "(write '{{' for a literal brace)"
                )
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(Placeholder(name))
            index = end + 1
        elif char == "}":
            raise ConfigError(
                f"key template {template!r}: unmatched '}}' at {index} "
                "(write '}}' for a literal brace)"
            )
        else:
            literal += char
            index += 1
    if literal:
        parts.append(literal)
    return tuple(parts)


def template_attributes(mapping_value: str) -> list[str]:
    """The source attributes a key_mapping value reads (one for a bare name)."""
    if not is_template(mapping_value):
        return [mapping_value]
    return [p.attribute for p in parse_template(mapping_value) if isinstance(p, Placeholder)]


def target_table_env(index: int) -> str:
    """The environment variable that names target number ``index`` (0-based)."""
    return ENV_TARGET_TABLE if index == 0 else f"{ENV_TARGET_TABLE}_{index}"


@dataclass(frozen=True)
class TargetConfig:
    """One table to delete from, and how a stream record names its key."""

    table: str
    key_mapping: Mapping[str, str]
    event_names: frozenset[str] = frozenset({"INSERT"})
    key_types: Mapping[str, str] = field(default_factory=dict)
    sort_key: str | None = None

    def __post_init__(self) -> None:
        if not self.table:
            raise ConfigError("a target table name is empty")
        if not self.key_mapping:
            raise ConfigError(f"key_mapping of target {self.table} is empty")
        unknown = set(self.event_names) - set(EVENT_NAMES)
        if unknown:
            raise ConfigError(f"unknown event names {sorted(unknown)}; allowed: {EVENT_NAMES}")
        if not self.event_names:
            raise ConfigError(f"target {self.table} selects no event")
        bad_types = {k: v for k, v in self.key_types.items() if v not in KEY_TYPES}
        if bad_types:
            raise ConfigError(f"key_types must be one of {KEY_TYPES}, got {bad_types}")

    def to_json(self) -> dict[str, object]:
        """The per-target fields of ``SCAVENGER_CONFIG`` (the table name travels apart)."""
        return {
            "key_mapping": dict(self.key_mapping),
            "key_types": dict(self.key_types),
            "sort_key": self.sort_key,
            "event_names": [e for e in EVENT_NAMES if e in self.event_names],
        }

    @classmethod
    def from_json(cls, table: str, raw: Mapping[str, object]) -> TargetConfig:
        """Inverse of :meth:`to_json`."""
        key_mapping, key_types = raw.get("key_mapping"), raw.get("key_types") or {}
        events, sort_key = raw.get("event_names") or ["INSERT"], raw.get("sort_key")
        if not isinstance(key_mapping, dict) or not isinstance(key_types, dict):
            raise ConfigError(f"{ENV_CONFIG}: key_mapping and key_types must be objects")
        if not isinstance(events, list) or not (sort_key is None or isinstance(sort_key, str)):
            raise ConfigError(f"{ENV_CONFIG}: event_names must be a list, sort_key a string")
        return cls(
            table=table,
            key_mapping=dict(key_mapping),
            key_types=dict(key_types),
            sort_key=sort_key,
            event_names=frozenset(events),
        )


@dataclass(frozen=True)
class ScavengerConfig:
    """What one scavenger deletes, from which tables, and how hard it tries."""

    targets: tuple[TargetConfig, ...]
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    log_items: bool = False
    #: Compute and count the keys, delete nothing (the role has no write permission then).
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.targets) <= MAX_TARGETS:
            raise ConfigError(f"a scavenger has 1..{MAX_TARGETS} targets, got {len(self.targets)}")
        tables = [t.table for t in self.targets]
        if len(set(tables)) != len(tables):
            raise ConfigError(f"target tables must be distinct, got {tables}")
        if not 1 <= self.max_concurrency <= 64:
            raise ConfigError("max_concurrency must be 1..64")
        if not 1 <= self.max_attempts <= 100:
            raise ConfigError("max_attempts must be 1..100")

    @classmethod
    def single(
        cls,
        target_table: str,
        key_mapping: Mapping[str, str],
        *,
        event_names: frozenset[str] = frozenset({"INSERT"}),
        key_types: Mapping[str, str] | None = None,
        sort_key: str | None = None,
        **options: Any,
    ) -> ScavengerConfig:
        """The configuration of a scavenger with one target."""
        target = TargetConfig(
            target_table, key_mapping, frozenset(event_names), dict(key_types or {}), sort_key
        )
        return cls((target,), **options)

    @property
    def event_names(self) -> frozenset[str]:
        """The events any target acts on."""
        return frozenset().union(*(t.event_names for t in self.targets))

    def to_env(self) -> dict[str, str]:
        """The environment variables that carry this configuration."""
        options = {
            "max_concurrency": self.max_concurrency,
            "max_attempts": self.max_attempts,
            "dry_run": self.dry_run,
        }
        targets = [t.to_json() for t in self.targets]
        body = {"version": CONFIG_VERSION, "targets": targets, **options}
        env = {target_table_env(i): t.table for i, t in enumerate(self.targets)}
        env[ENV_CONFIG] = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if self.log_items:
            env[ENV_LOG_ITEMS] = "true"
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ScavengerConfig:
        """Read the configuration the construct wrote; raise ConfigError if it is unusable."""
        try:
            raw = json.loads(environ[ENV_CONFIG])
        except KeyError as missing:
            raise ConfigError(f"environment variable {missing} is not set") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{ENV_CONFIG} is not JSON: {err}") from None
        if (
            not isinstance(raw, dict)
            or raw.get("version") != CONFIG_VERSION
            or not isinstance(raw.get("targets"), list)
        ):
            raise ConfigError(
                f"{ENV_CONFIG} must be a version {CONFIG_VERSION} object with a targets list"
            )
        entries = raw["targets"]
        targets = []
        for index, entry in enumerate(entries):
            name = target_table_env(index)
            if name not in environ:
                raise ConfigError(f"environment variable {name!r} is not set")
            if not isinstance(entry, dict):
                raise ConfigError(f"{ENV_CONFIG}: target {index} is not an object")
            targets.append(TargetConfig.from_json(environ[name], entry))
        return cls(
            targets=tuple(targets),
            max_concurrency=int(raw.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
            max_attempts=int(raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            dry_run=bool(raw.get("dry_run", False)),
            log_items=environ.get(ENV_LOG_ITEMS, "").lower() == "true",
        )


#: The events a backfill can stand a scanned item for, preferred first (REMOVE is about an
#: item that is gone, so a scan has nothing to read it from).
BACKFILL_EVENTS = ("INSERT", "MODIFY")


def backfill_event(event_names: frozenset[str]) -> str | None:
    """The event a scanned item stands for, for a scavenger acting on ``event_names``:
    ``INSERT``, or ``MODIFY`` for one that acts on ``MODIFY`` but not ``INSERT``; None for a
    ``REMOVE``-only scavenger, which cannot be backfilled."""
    return next((name for name in BACKFILL_EVENTS if name in event_names), None)


@dataclass(frozen=True)
class BackfillConfig:
    """What the backfill worker scans, and how much it may spend (per segment in flight)."""

    source_table: str
    key_names: tuple[str, ...]
    view_type: str = "NEW_IMAGE"
    event_name: str = "INSERT"
    #: The event source mapping's ``FilterCriteria`` patterns (JSON text), none: every item.
    filters: tuple[str, ...] = ()
    page_size: int = 1000
    write_units_per_s: float | None = None
    read_units_per_s: float | None = None

    def __post_init__(self) -> None:
        if not self.key_names or self.event_name not in BACKFILL_EVENTS:
            raise ConfigError("a backfill needs the source's key names and INSERT or MODIFY")
        if not 1 <= self.page_size <= 10_000:
            raise ConfigError(f"backfill page_size must be 1..10,000, got {self.page_size}")
        for units in (self.write_units_per_s, self.read_units_per_s):
            if units is not None and not 0 < units <= 10_000_000:
                raise ConfigError(f"backfill units per second must be > 0, got {units}")

    def to_env(self) -> dict[str, str]:
        """The two variables of the worker beside :meth:`ScavengerConfig.to_env`."""
        body = {
            "version": BACKFILL_VERSION,
            "key_names": list(self.key_names),
            "view_type": self.view_type,
            "event_name": self.event_name,
            "filters": list(self.filters),
            "page_size": self.page_size,
            "write_units_per_s": self.write_units_per_s,
            "read_units_per_s": self.read_units_per_s,
        }
        return {
            ENV_BACKFILL_SOURCE: self.source_table,
            ENV_BACKFILL: json.dumps(body, sort_keys=True, separators=(",", ":")),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BackfillConfig:
        """Read what the construct wrote; ConfigError if it is unusable."""
        try:
            raw = json.loads(environ[ENV_BACKFILL])
            source = environ[ENV_BACKFILL_SOURCE]
        except KeyError as missing:
            raise ConfigError(f"environment variable {missing} is not set") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{ENV_BACKFILL} is not JSON: {err}") from None
        if not isinstance(raw, dict) or raw.get("version") != BACKFILL_VERSION:
            raise ConfigError(f"{ENV_BACKFILL} must be a version {BACKFILL_VERSION} object")
        return cls(
            source_table=source,
            key_names=tuple(raw.get("key_names") or ()),
            view_type=str(raw.get("view_type", "NEW_IMAGE")),
            event_name=str(raw.get("event_name", "INSERT")),
            filters=tuple(raw.get("filters") or ()),
            page_size=int(raw.get("page_size", 1000)),
            write_units_per_s=raw.get("write_units_per_s"),
            read_units_per_s=raw.get("read_units_per_s"),
        )
