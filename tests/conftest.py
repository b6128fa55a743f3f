"""Shared fixtures: a simulator on 127.0.0.1 and the tap run as a real process.

Only fixtures live here; the helpers tests import by name are in helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from helpers import TAP, TapRun, parse_messages, write_json

from tap_marketo_activities.simulator import MarketoSimulator

if TYPE_CHECKING:
    from tap_marketo_activities.simulator import World


@pytest.fixture
def run_tap(tmp_path):
    """Run the tap as a process: run_tap(config, state=None, catalog=None, args=())."""
    counter = iter(range(10_000))

    def run(
        config: dict[str, Any],
        state: dict[str, Any] | None = None,
        *,
        catalog: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> TapRun:
        n = next(counter)
        command = [*TAP, "--config", str(write_json(tmp_path, f"config{n}.json", config))]
        if state is not None:
            command += ["--state", str(write_json(tmp_path, f"state{n}.json", state))]
        if catalog is not None:
            command += ["--catalog", str(write_json(tmp_path, f"catalog{n}.json", catalog))]
        command += list(args)
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
        singer_output = not {"--about", "--discover"} & set(args)
        messages = parse_messages(done.stdout) if singer_output else []
        return TapRun(done.returncode, messages, done.stderr, done.stdout)

    return run


@pytest.fixture
def simulator():
    """simulator(world, **knobs) starts a MarketoSimulator, stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(world: World | None = None, **knobs: Any) -> MarketoSimulator:
            return stack.enter_context(MarketoSimulator(world, **knobs))

        yield start
