"""A start_date Meltano re-wrote is quoted as the tap received it, and said to come from Meltano.

Meltano 4 re-writes ``date_iso8601`` settings before the tap sees them: a date-time written
unquoted in meltano.yml loses its zone, and ``2024-01-01 10:00`` arrives as
``2024-01-01T10:00:00``. The tap refused that as "start_date '2024-01-01T10:00:00' needs a time
zone", quoting a string the person never wrote. Run through ``meltano invoke`` with the
``prod`` environment and the date from the environment, as the README configures a real
instance; the refusal comes before any call, so the base_url is never reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from helpers import Meltano

pytestmark = [pytest.mark.slow, pytest.mark.meltano, pytest.mark.xdist_group("meltano")]

PROD = {
    "TAP_MARKETO_CLIENT_ID": "id-from-env",
    "TAP_MARKETO_CLIENT_SECRET": "secret-from-env",
    "TAP_MARKETO_BASE_URL": "https://123-ABC-456.mktorest.com",
}


def invoke_with_start_date(meltano: Meltano, state_db: Path, value: str):
    """`meltano invoke tap-marketo` in prod with start_date set through Meltano's env var."""
    return meltano(
        "--environment=prod",
        "invoke",
        "tap-marketo",
        env={**PROD, "TAP_MARKETO_START_DATE": value},
        database=state_db,
        check=False,
    )


def test_a_start_date_meltano_rewrote_is_quoted_as_received_and_from_meltano(
    meltano: Meltano, state_db: Path
):
    done = invoke_with_start_date(meltano, state_db, "2024-01-01 10:00")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "start_date" in line]
    assert errors, done.stderr[-3000:]
    assert any(
        "start_date reached the tap from Meltano (tap-marketo) as '2024-01-01T10:00:00', with "
        "no time zone. Meltano re-writes date settings" in line
        for line in errors
    ), errors
    assert "needs a time zone" not in done.stderr
    assert "Skipping parse of env var settings" not in done.stderr  # quiet in --discover too
    assert "secret-from-env" not in done.stderr + done.stdout
    # (Meltano prints a traceback of its own when discovery fails; the tap's is one line.)
    tap_lines = [line for line in done.stderr.splitlines() if "tap-marketo  " in line]
    assert [line for line in tap_lines if "[error" in line] == [
        next(line for line in tap_lines if "reached the tap from Meltano" in line)
    ]


def test_a_start_date_meltano_passes_as_written_is_quoted_as_written(
    meltano: Meltano, state_db: Path
):
    """A quoted ISO 8601 value reaches the tap as written; its refusal quotes it unchanged."""
    done = invoke_with_start_date(meltano, state_db, "2999-01-01T00:00:00Z")
    assert done.returncode != 0
    assert "start_date '2999-01-01T00:00:00Z' is in the future" in done.stderr, done.stderr[-3000:]
    assert "from Meltano" not in done.stderr
