"""Messages that point at the right place (issue 12 item 8)."""

from __future__ import annotations

import socket
import struct
import subprocess
import time

from helpers import TAP, sim_config, write_json

from tap_marketo_activities.simulator import MarketoSimulator, World

IDENTITY = "/identity/oauth/token"


def test_simulator_is_quiet_when_a_client_hangs_up(capfd):
    with MarketoSimulator(World.seed_afternoon(rows=10, seed=1)) as sim:
        sim.faults.latency_s = 0.5
        sim.inject(IDENTITY, "slow")
        client = socket.create_connection(("127.0.0.1", sim.port))
        client.sendall(b"GET /identity/oauth/token HTTP/1.1\r\nHost: x\r\n\r\n")
        # Hang up with a reset before the (slow) answer is written.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        time.sleep(1.5)
        assert sim.counters.identity_calls == 1
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    assert "BrokenPipe" not in captured.err
    assert "ConnectionReset" not in captured.err


NOW = "2024-04-12T16:00:00Z"


def one_error(run) -> str:
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    return errors[0]


def test_pagingtoken_refusal_names_that_endpoint(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=100, seed=1), now=NOW)
    # Every chain mints its paging token in its own thread (prefetch.py), in any order: a
    # single refusal could land on a chain emitted after activities' first type group.
    sim.inject("pagingtoken.json", "1003", times=20)
    run = run_tap(sim_config(sim))
    assert run.returncode == 1
    line = one_error(run)
    assert "Marketo refused /v1/activities/pagingtoken.json (called for stream 'activities')" in (
        line
    )
    assert "/v1/activities.json" not in line
    assert not run.records.get("activities")


def test_types_failure_is_not_labelled_as_activities(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=100, seed=1), now=NOW)
    sim.inject("types.json", "603")
    run = run_tap(sim_config(sim))
    assert run.returncode == 1
    line = one_error(run)
    assert "Marketo refused activity_types (/v1/activities/types.json): 603" in line
    assert "'activities'" not in run.stderr.split("| ERROR", 1)[1]
    assert not run.records


def test_connection_test_is_quiet_when_it_works_and_fails_loudly(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=100, seed=1), now=NOW)
    ok = run_tap(sim_config(sim), args=("--test",))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.error_lines() == []
    sim.inject("types.json", "603", times=5)
    bad = run_tap(sim_config(sim), args=("--test",))
    assert bad.returncode == 1
    line = one_error(bad)
    assert "Connection test failed: Marketo refused activity_types" in line


def test_a_target_that_stops_reading_is_named(simulator, tmp_path):
    sim = simulator(World.seed_afternoon(rows=1500, seed=2), now=NOW)
    config = write_json(tmp_path, "config.json", sim_config(sim, page_size=50))
    process = subprocess.Popen(
        [*TAP, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    for _ in range(20):  # the target reads a little, then goes away
        process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=120)
    process.stderr.close()
    assert process.returncode == 1
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, stderr[-3000:]
    assert "The target stopped reading the tap's output (broken pipe)" in errors[0]
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
