"""Scenarios (seed afternoon, generic, quick start), determinism, the clock and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tap_marketo_activities.simulator import Campaign, MarketoSimulator, World
from tap_marketo_activities.simulator.clock import VirtualClock, parse_datetime

UTC = timezone.utc
DAY = datetime(2024, 4, 12, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def test_seed_afternoon_has_the_article_s_shape():
    world = World.seed_afternoon(rows=1000, seed=7)
    rows = list(world.rows())
    assert len(rows) == 1000
    assert any(r.activity_date < at(12) for r in rows)  # rows before the start date
    first = [r for r in rows if r.campaign_id == 2001]
    second = [r for r in rows if r.campaign_id == 2002]
    assert len(first) == len(second) == 200
    assert all(r.activity_type_id == 6 for r in first + second)
    assert all(at(12, 30) <= r.activity_date < at(12, 36) for r in first)
    assert all(r.committed_at <= at(12, 40) for r in first)
    assert all(at(13, 45) <= r.activity_date <= at(13, 50) for r in second)
    assert all(r.committed_at <= at(14, 10) for r in second)
    committed_by_14 = sum(r.committed_at <= at(14) for r in second) / len(second)
    assert 0.35 < committed_by_14 < 0.65
    afternoon_types = {r.activity_type_id for r in rows if r.activity_date >= at(12)}
    assert len(afternoon_types - {13, 37}) > 10
    assert {12, 13, 37, 100001} <= afternoon_types
    assert all(r.committed_at >= r.activity_date for r in rows)
    commits = [r.committed_at for r in rows]
    assert commits == sorted(commits)


def test_seed_afternoon_moves_to_another_day_unchanged():
    """Benchmarks against clients that size windows by the real clock need a recent day."""
    original = World.seed_afternoon(rows=2000, seed=3)
    moved = World.seed_afternoon(rows=2000, seed=3, day=datetime(2026, 11, 22).date())
    shift = datetime(2026, 11, 22, tzinfo=UTC) - DAY
    assert moved.default_now == original.default_now + shift
    for a, b in zip(original.rows(), moved.rows(), strict=True):
        assert b.activity_date == a.activity_date + shift
        assert b.committed_at == a.committed_at + shift
        assert (b.marketo_guid, b.activity_type_id, b.lead_id, b.campaign_id) == (
            a.marketo_guid,
            a.activity_type_id,
            a.lead_id,
            a.campaign_id,
        )


def test_rows_scale_every_part_proportionally():
    small = World.seed_afternoon(rows=100, seed=1)
    assert len(small) == 100
    assert sum(r.campaign_id == 2002 for r in small.rows()) == 20
    assert {12, 13, 37, 100001} <= small.type_ids()


def test_the_same_seed_makes_the_same_world():
    one, two = World.seed_afternoon(rows=300, seed=7), World.seed_afternoon(rows=300, seed=7)
    other = World.seed_afternoon(rows=300, seed=8)
    now = at(18)
    assert one.expected("activities", now) == two.expected("activities", now)
    assert one.expected("activities", now) != other.expected("activities", now)
    assert one.fingerprint == two.fingerprint != other.fingerprint


def test_guids_are_unique_and_map_back_to_rows():
    world = World.seed_afternoon(rows=2000, seed=3)
    guids = [world.guid(i) for i in range(len(world))]
    assert len(set(guids)) == len(guids)
    assert all(world.index_of_guid(g) == i for i, g in enumerate(guids))
    with pytest.raises(KeyError):
        world.index_of_guid("00000000-0000-4000-a000-000000000000")


def test_generate_places_campaigns_and_late_rows():
    world = World.generate(
        start="2024-05-01T00:00:00Z",
        hours=6,
        rows=2000,
        seed=3,
        campaigns=[
            {"at": "2024-05-01T02:00:00Z", "size": 300, "commit_minutes": 40},
            Campaign(at="2024-05-01T04:00:00Z", size=100, type_id=7),
        ],
        late_fraction=0.2,
        max_late_minutes=50,
    )
    rows = list(world.rows())
    assert len(rows) == 2000
    assert world.default_now == parse_datetime("2024-05-01T06:00:00Z")
    campaign = [r for r in rows if r.campaign_id == 2001]
    assert len(campaign) == 300
    assert max(r.committed_at - r.activity_date for r in campaign) > timedelta(minutes=20)
    assert sum(r.campaign_id == 2002 and r.activity_type_id == 7 for r in rows) == 100
    background = [r for r in rows if r.campaign_id not in (2001, 2002)]
    late = [r for r in background if r.committed_at - r.activity_date > timedelta(seconds=20)]
    assert 0.1 < len(late) / len(background) < 0.25
    assert max(r.committed_at - r.activity_date for r in late) <= timedelta(minutes=50)


def test_quickstart_is_anchored_to_the_day_and_deterministic():
    one = World.quickstart(today="2024-05-01T13:37:00Z")
    two = World.quickstart(today="2024-05-01T20:00:00Z")
    assert one.anchor == parse_datetime("2024-05-01")
    assert one.live
    assert [one.guid(i) for i in range(50)] == [two.guid(i) for i in range(50)]
    assert one.fingerprint == two.fingerprint
    assert World.quickstart(today="2024-05-02").fingerprint != one.fingerprint
    half_hourly = {r.campaign_id for r in one.rows() if r.campaign_id and r.campaign_id >= 3000}
    assert len(half_hourly) == 48


def test_quickstart_rows_commit_within_the_default_lookback():
    """The demo must show late rows arriving, never rows the default settings would lose."""
    world = World.quickstart(today="2024-05-01")
    worst = max(r.committed_at - r.activity_date for r in world.rows())
    assert timedelta(minutes=20) < worst <= timedelta(minutes=40)


def test_quickstart_shows_late_rows_arriving_minutes_apart():
    world = World.quickstart(today="2024-05-01")
    rows = [r for r in world.rows() if r.activity_type_id not in (13, 37)]
    for minute_of_day in range(60, 24 * 60, 7):
        now = world.anchor + timedelta(minutes=minute_of_day)
        arriving = [
            r for r in rows if r.activity_date < now < r.committed_at <= now + timedelta(minutes=5)
        ]
        assert arriving, f"no late rows arrive between {now} and five minutes later"
    with MarketoSimulator(world, now=world.anchor + timedelta(hours=9, minutes=30)) as sim:
        first = {r["marketoGUID"] for r in sim.expected("activities")}
        sim.clock.advance(minutes=5)
        second = sim.expected("activities", since=world.anchor)
        assert first < {r["marketoGUID"] for r in second}


def test_the_quickstart_simulator_follows_real_time():
    with MarketoSimulator(World.quickstart()) as sim:
        assert abs(sim.clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
        response = requests.get(sim.base_url + "/rest/v1/activities/types.json", timeout=5)
        assert response.headers["Date"]


def test_virtual_clock_set_advance_and_parse():
    clock = VirtualClock("2024-04-12T14:00:00Z")
    assert clock.now() == at(14)
    clock.advance(minutes=5)
    clock.advance(timedelta(seconds=30), hours=1)
    assert clock.now() == at(15, 5) + timedelta(seconds=30)
    clock.set(at(16))
    assert clock.now() == at(16)
    assert parse_datetime("2024-04-12T18:00:00+04:00") == at(14)
    assert parse_datetime("2024-04-12T08:00:00-0600") == at(14)
    assert parse_datetime("2024-04-12") == DAY
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime("12/04/2024")


def test_expected_defaults_to_every_type_but_13_and_37():
    with MarketoSimulator(World.seed_afternoon(rows=500, seed=2)) as sim:
        rows = sim.expected("activities")
        assert rows
        assert not {r["activityTypeId"] for r in rows} & {13, 37}
        assert {r["activityTypeId"] for r in sim.expected("lead_changes")} == {12, 13}
        assert {r["activityTypeId"] for r in sim.expected("deleted_leads")} == {37}
        count_at_14 = len(sim.expected("activities", type_ids=[6]))
        sim.clock.set("2024-04-12T14:30:00Z")
        assert len(sim.expected("activities", type_ids=[6])) > count_at_14
        with pytest.raises(ValueError, match="unknown stream"):
            sim.expected("leads")


def test_cli_serves_and_prints_its_base_url_first():
    help_text = subprocess.run(
        [sys.executable, "-m", "tap_marketo_activities.simulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for knob in (
        "--port",
        "--scenario",
        "--rows",
        "--token-lifetime",
        "--fault-rate",
        "--latency",
        "--long-tokens",
    ):
        assert knob in help_text
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_marketo_activities.simulator",
            "--port",
            "0",
            "--scenario",
            "seed-afternoon",
            "--rows",
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        token = requests.get(
            base_url + "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": "simulator",
                "client_secret": "simulator",
            },
            timeout=5,
        )
        assert token.status_code == 200
        dated = requests.get(base_url + "/rest/v1/activities/types.json", timeout=5)
        assert dated.headers["Date"] == "Fri, 12 Apr 2024 14:00:00 GMT"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
