"""Every name discovery hands a target stays distinct however the target folds names.

The unit tests in test_typed_streams.py build clashing types by hand; this one takes the whole
catalog the tap discovers from the simulator's type list (Marketo's standard types, several of
which carry an attribute ``Lead ID`` or ``Campaign ID`` next to the common ``leadId`` and
``campaignId``, plus custom types) and checks the promise the README makes: within a stream no
two properties, and across the catalog no two streams, are equal once case and separators are
ignored, nor once upper-cased (Snowflake's unquoted names) or snake-cased (the SDK's way).
"""

from __future__ import annotations

import json
import re

import pytest
from helpers import sim_config

from tap_marketo_activities.simulator import World
from tap_marketo_activities.streams.schemas import COMMON_FIELDS

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def folds(name: str) -> dict[str, str]:
    """What targets and warehouses may make of a name, by way of folding."""
    return {
        "no case, no separators": re.sub(r"[^a-z0-9]", "", name.lower()),
        "upper case": name.upper(),
        "snake case": re.sub(r"[^a-z0-9]+", "_", _CAMEL.sub("_", name).lower()).strip("_"),
    }


def clashes(names: list[str]) -> list[tuple[str, str, str]]:
    """Pairs of names that one fold makes equal, with the fold's name."""
    found = []
    for fold in folds("x"):
        seen: dict[str, str] = {}
        for name in names:
            key = folds(name)[fold]
            if key in seen:
                found.append((fold, seen[key], name))
            seen.setdefault(key, name)
    return found


@pytest.fixture
def catalog(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=200, seed=23), now="2024-04-12T16:00:00Z")
    done = run_tap(sim_config(sim), args=("--discover",))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_discovered_names_stay_distinct_under_every_fold(catalog):
    typed = {
        s["tap_stream_id"]: s for s in catalog["streams"] if s["tap_stream_id"] != "activities"
    }
    typed = {name: s for name, s in typed.items() if name.startswith("activities_")}
    assert len(typed) >= 10, sorted(typed)
    # The case the README names: some of Marketo's types list the lead's id as an attribute.
    with_lead_id = [n for n, s in typed.items() if "lead_id_attribute" in s["schema"]["properties"]]
    assert with_lead_id, "no simulated type carries a Lead ID attribute; the test lost its point"
    for name, stream in typed.items():
        properties = list(stream["schema"]["properties"])
        assert set(COMMON_FIELDS) <= set(properties), name
        assert clashes(properties) == [], name
    assert clashes([s["tap_stream_id"] for s in catalog["streams"]]) == []
