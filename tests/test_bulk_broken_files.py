"""Odd export files: a huge field is read, a short file is exported again, bytes that are not
UTF-8 are reported with their window and the file kept. Through the real tap process."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from helpers import expected_guids
from test_bulk_e2e import TAP_START, assert_clean, bulk_config, creates, tap_world


def assert_all_once(sim, run):
    delivered = run.guids("activities")
    assert [g for g, n in Counter(delivered).items() if n > 1] == []
    assert sorted(delivered) == expected_guids(sim, "activities", TAP_START)


def test_a_field_larger_than_the_csv_modules_limit_is_read(simulator, run_tap):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.big_field_chars = 300_000  # the csv module stops at 131,072 by default
    run = run_tap(bulk_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    assert_clean(run)
    assert "through REST instead" not in run.stderr
    assert max(len(r.get("primaryAttributeValue") or "") for r in run.records["activities"]) == (
        300_000
    )
    assert_all_once(sim, run)


def test_a_file_shorter_than_numberofrecords_is_exported_again_then_read_by_rest(
    simulator, run_tap
):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.short_rows = 30  # every file lacks its last 30 rows; the checksum matches
    run = run_tap(bulk_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    assert_clean(run)
    assert re.search(r"the file holds (\d+) rows, the job's status announced \d+", run.stderr)
    counts = re.findall(r"the file holds (\d+) rows, the job's status announced (\d+)", run.stderr)
    assert all(int(b) - int(a) == 30 for a, b in counts)
    assert "creating it again" in run.stderr
    assert "through REST instead" in run.stderr  # the second file is short too
    assert creates(sim) == 2
    assert_all_once(sim, run)  # the 30 rows are not lost


def test_bytes_that_are_not_utf8_are_reported_and_the_file_kept(simulator, run_tap, tmp_path):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.invalid_utf8_rows = 4
    run = run_tap(bulk_config(sim), env={"TMPDIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert_clean(run)
    (warning,) = [line for line in run.stderr.splitlines() if "not UTF-8" in line]
    assert "4 bytes in 4 rows are not UTF-8" in warning
    assert "2024-01-01T00:00:00Z .. 2024-01-10T23:45:00Z" in warning  # the window
    kept = Path(re.search(r"is kept at (\S+\.csv)", warning).group(1))
    assert kept.parent.parent == tmp_path
    assert kept.read_bytes().count(b"\xff") == 4  # recoverable: the original bytes
    marked = [
        r for r in run.records["activities"] if "\ufffd" in (r["primaryAttributeValue"] or "")
    ]
    assert len(marked) == 4
    assert_all_once(sim, run)
