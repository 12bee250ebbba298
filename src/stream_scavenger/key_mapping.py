"""Which source attribute feeds each key attribute of the target."""

from __future__ import annotations

from collections.abc import Mapping

from .runtime.scavenger.config import (
    ConfigError,
    Placeholder,
    is_template,
    parse_template,
)
from .tables import KeySchema
from .validation import ScavengerConfigError


def resolve_key_mapping(
    key_mapping: Mapping[str, str] | None, target_schema: KeySchema | None
) -> dict[str, str]:
    """The complete mapping target key attribute -> source attribute, validated.

    Without ``key_mapping`` each target key attribute is read from the source
    attribute of the same name; that needs the target's key schema.
    """
    if key_mapping is None:
        if target_schema is None:
            raise ScavengerConfigError(
                "key_mapping is required when the target's key schema is unknown "
                "(an imported target_table): pass "
                "key_mapping={'<target key>': '<source attribute>'}"
            )
        return {name: name for name in target_schema.attributes}
    if not isinstance(key_mapping, Mapping) or not key_mapping:
        raise ScavengerConfigError(
            "key_mapping must be a non-empty dict of target key attribute -> source attribute"
        )
    for target, source in key_mapping.items():
        if not isinstance(target, str) or not target or not isinstance(source, str) or not source:
            raise ScavengerConfigError(
                f"key_mapping entries must be non-empty strings, got {target!r}: {source!r}"
            )
    if target_schema is None:
        if len(key_mapping) > 2:
            raise ScavengerConfigError(
                f"key_mapping names {len(key_mapping)} target attributes; a key has 1 or 2"
            )
        return dict(key_mapping)
    expected = set(target_schema.attributes)
    unknown = sorted(set(key_mapping) - expected)
    missing = sorted(expected - set(key_mapping))
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"names {unknown}, which are not key attributes of the target")
        if missing:
            problems.append(f"misses the target key attributes {missing}")
        raise ScavengerConfigError(
            f"key_mapping {' and '.join(problems)}; the target key is {target_schema.attributes}"
        )
    return {name: key_mapping[name] for name in target_schema.attributes}


def check_templates(
    key_mapping: Mapping[str, str],
    target_schema: KeySchema | None,
    source_schema: KeySchema | None,
) -> None:
    """Templates parse, feed only string keys, and read no binary key attribute of the source."""
    for target, source in key_mapping.items():
        if not is_template(source):
            continue
        try:
            parts = parse_template(source)
        except ConfigError as err:
            raise ScavengerConfigError(f"key_mapping[{target!r}]: {err}") from None
        if not any(isinstance(p, Placeholder) for p in parts):
            raise ScavengerConfigError(
                f"key_mapping[{target!r}] = {source!r} has no {{attribute}} placeholder: "
                "every record would name the same key"
            )
        if target_schema is not None and target_schema.types.get(target) != "S":
            raise ScavengerConfigError(
                f"key_mapping[{target!r}] is a template, which produces a string, but the target "
                f"key {target!r} is {target_schema.types.get(target)}: use a bare attribute name"
            )
        binary = [
            p.attribute
            for p in parts
            if isinstance(p, Placeholder)
            and source_schema is not None
            and source_schema.types.get(p.attribute) == "B"
        ]
        if binary:
            raise ScavengerConfigError(
                f"key_mapping[{target!r}]: {binary[0]!r} is a binary key attribute of the source; "
                "binary values cannot be rendered into a key template"
            )
