"""The local modules' old names still import, with a DeprecationWarning, and are the new ones."""

from __future__ import annotations

import importlib
import sys

import pytest

RENAMED = {
    "stream_scavenger.local.runner": "stream_scavenger.local.event_source_mapping",
    "stream_scavenger.local.check": "stream_scavenger.local.scenario",
    "stream_scavenger.local.redrive": "stream_scavenger.redrive",
}


@pytest.mark.parametrize(("old", "new"), RENAMED.items())
def test_an_old_module_name_warns_and_holds_the_new_modules_names(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        legacy = importlib.import_module(old)
    current = importlib.import_module(new)
    public = [n for n in vars(current) if not n.startswith("_") and callable(vars(current)[n])]
    assert public, new
    for name in public:
        assert getattr(legacy, name) is getattr(current, name), name
