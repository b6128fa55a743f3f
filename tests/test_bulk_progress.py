"""Progress during bulk waits (issue 24, in bulk/backfill.py): a line at least once a minute.

The backfill runs against the simulator over real HTTP; its sleep advances the simulator's
virtual clock and its progress clock reads that clock, so ten minutes of waiting cost none.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import re

from test_bulk_e2e import START, by_guid, expected_records, make_backfill, sim, transport

__all__ = ["sim", "transport"]  # fixtures

LINE = re.compile(
    r"Bulk backfill of activities: export (?P<id>[0-9a-f-]{36}) \((?P<window>[^)]+)\): "
    r"(?P<text>.*)\."
)


def progress_lines(caplog):
    return [m for r in caplog.records if (m := LINE.fullmatch(r.getMessage()))]


def test_a_long_job_wait_reports_every_minute_naming_job_window_status_rows(sim, transport, caplog):
    sim.bulk.processing_s = 600  # each job processes for ten minutes
    backfill = make_backfill(sim, transport, {})
    backfill.clock = lambda: sim.clock.now().timestamp()
    end = START + dt.timedelta(days=40)  # two windows, two jobs
    with caplog.at_level(logging.INFO):
        got = list(backfill.records(START, end))
    assert by_guid(got) == expected_records(sim, end)
    lines = progress_lines(caplog)
    waiting = [m for m in lines if "waited" in m["text"]]
    # at least one line per minute waited (each job: >= 10 min of polls, minus its first)
    assert len(waiting) >= backfill.stats.wait_s // 60 - 1, [m["text"] for m in lines]
    ids = {m["id"] for m in waiting}
    assert len(ids) == 2
    first = waiting[0]
    assert first["window"].startswith("2024-01-01")
    assert re.match(r"(queued|processing), waited \d+\.\d min, 0 rows so far$", first["text"])
    # the second job's lines carry rows delivered by the first and an estimate from it
    second = [m for m in waiting if m["id"] != first["id"]]
    assert all(m["window"].startswith("2024-02-01") for m in second)
    assert re.search(r", [1-9]\d* rows so far; about \d+ min left", second[0]["text"])


def test_a_download_reports_its_share_and_time_left(sim, transport, caplog):
    backfill = make_backfill(sim, transport, {})
    ticks = itertools.count(step=61.0)  # every look at the clock is a minute later
    backfill.clock = lambda: float(next(ticks))
    backfill.settings = dataclasses.replace(backfill.settings, poll_initial_s=1)
    end = START + dt.timedelta(days=10)
    with caplog.at_level(logging.INFO):
        got = list(backfill.records(START, end))
    assert by_guid(got) == expected_records(sim, end)
    downloads = [m["text"] for m in progress_lines(caplog) if "downloading" in m["text"]]
    assert downloads, caplog.text[-2000:]
    assert re.match(r"downloading, \d+\.\d MB of \d+\.\d MB \(\d+%\)", downloads[-1])


def test_short_waits_write_no_progress_line(sim, transport, caplog):
    backfill = make_backfill(sim, transport, {})
    backfill.clock = lambda: sim.clock.now().timestamp()
    backfill.settings = dataclasses.replace(backfill.settings, poll_initial_s=5, poll_max_s=5)
    sim.bulk.processing_s = 20
    with caplog.at_level(logging.INFO):
        list(backfill.records(START, START + dt.timedelta(days=10)))
    assert progress_lines(caplog) == []
