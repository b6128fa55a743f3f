"""The tap stands on the SDK's public surface; the private names it still needs are pinned."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
from pathlib import Path

import pytest
from helpers import sim_config
from singer_sdk.streams import Stream

import tap_marketo_activities
from tap_marketo_activities.simulator import World
from tap_marketo_activities.streams.sdk_private import PINNED_ATTRIBUTES, PINNED_SIGNATURES

PACKAGE = Path(tap_marketo_activities.__file__).parent
PRIVATE_PLACE = "tap_marketo_activities/streams/sdk_private.py"
# Extended regular expressions for `git grep -E`: the names the SDK keeps private.
FORBIDDEN = (
    r"(^|[^[:alnum:]_])_request\(",
    r"super\(Tap, cls\)",
    r"_ConfigInput",
    r"helpers\._util",
    r"ignore\[attr-defined\]",
    r"\._tap\b",
)


@pytest.mark.parametrize("name", sorted(PINNED_SIGNATURES))
def test_private_sdk_methods_we_override_keep_their_signature(name):
    method = getattr(Stream, name, None)
    assert method is not None, (
        f"singer-sdk no longer has Stream.{name}; sdk_private.py overrides it to change the "
        "SDK behaviour its docstring names. Find the new hook before upgrading."
    )
    parameters = tuple(inspect.signature(method).parameters)
    assert parameters == PINNED_SIGNATURES[name], (
        f"singer-sdk changed Stream.{name}{parameters}; sdk_private.py was written for "
        f"{PINNED_SIGNATURES[name]}. Re-read the SDK before upgrading."
    )


@pytest.mark.parametrize("name", PINNED_ATTRIBUTES)
def test_private_sdk_attributes_we_read_are_still_set_by_the_sdk(name):
    assignment = rf"self\.{name}\b[^=\n]*= "
    assert re.search(assignment, inspect.getsource(Stream.__init__)), (
        f"singer-sdk's Stream no longer sets {name}; sdk_private.DirectRecordMessages reads "
        "it. Re-read Stream._generate_record_messages before upgrading."
    )


def test_no_private_sdk_names_outside_the_one_documented_place():
    for needle in FORBIDDEN:
        found = subprocess.run(
            ["git", "grep", "-n", "-E", needle, "--", "tap_marketo_activities/"],
            cwd=PACKAGE.parent,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
        outside = [line for line in found if not line.startswith(PRIVATE_PLACE)]
        assert not outside, f"{needle!r} used outside {PRIVATE_PLACE}: {outside}"


def _our_classes():
    for module_info in pkgutil.walk_packages([str(PACKAGE)], "tap_marketo_activities."):
        if ".simulator" in module_info.name or module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                yield cls


LIBRARIES = ("singer_sdk", "requests", "logging")


def _function(member):
    """The function behind a method, property, classmethod or staticmethod."""
    member = getattr(member, "fget", member)
    return getattr(member, "__func__", member)


def test_every_override_of_a_library_method_says_so():
    missing = []
    for cls in _our_classes():
        for name, member in vars(cls).items():
            function = _function(member)
            if name.startswith("__") or not callable(function) or isinstance(member, type):
                continue
            overrides = any(
                name in vars(base) and base.__module__.startswith(LIBRARIES)
                for base in cls.__mro__[1:]
            )
            if overrides and not getattr(function, "__override__", False):
                missing.append(f"{cls.__name__}.{name}")
    assert not missing, f"overrides without @override: {missing}"


def test_a_run_logs_the_sdks_request_duration_metric(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now="2024-04-12T16:00:00Z")
    run = run_tap(sim_config(sim, metrics_log_level="INFO"))
    assert run.returncode == 0, run.stderr[-3000:]
    timers = [line for line in run.stderr.splitlines() if '"http_request_duration"' in line]
    endpoints = {
        endpoint
        for endpoint in ("/v1/activities.json", "/v1/activities/leadchanges.json")
        if any(f'"endpoint":"{endpoint}"' in line for line in timers)
    }
    assert endpoints == {"/v1/activities.json", "/v1/activities/leadchanges.json"}, timers[:3]


def test_a_refused_token_is_renewed_without_spending_a_retry(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=600, seed=5), now="2024-04-12T16:00:00Z")
    sim.inject("activities.json", "601", times=1)
    sim.inject("leadchanges.json", "602", times=1)
    run = run_tap(sim_config(sim, page_size=100, max_retries=0))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Retrying" not in run.stderr
    assert sim.counters.identity_calls >= 3
    assert "retries 2 (token expired (601/602)=2)" in run.stderr
