"""Reading one partition's saved state: every field checked before it is trusted.

The state is input a person (or an attacker) can hand the tap; each problem names the
field and what to do, and nothing is synced (``StateError``). ``PartitionSync`` reads its
bookmark, overlap set, tally and cursor through these.
"""

from __future__ import annotations

import datetime as dt
import typing as t
import zlib

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.sync.cursor import STATE_VERSION, Cursor, _short
from tap_marketo_activities.sync.overlap import OverlapSet, OverlapSetError
from tap_marketo_activities.sync.tally import Tally, TallyError

REPLICATION_KEY = "activityDate"
_D = t.TypeVar("_D")

# Marketo's paging tokens are tens of characters; anything near this is not one.
MAX_TOKEN_CHARS = 65_536
# Times a state may hold: epoch seconds stay non-negative, and a day of headroom at the
# top keeps ``bookmark + anything`` from overflowing.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc)


class PartitionStateReader:
    """The checked readers of a partition's state dict (``label`` names it in errors)."""

    label: str
    state: dict[str, t.Any]
    overlap_since: dt.datetime | None
    overlap_tally: Tally

    # -- reading state ---------------------------------------------------------

    def _fail(self, field_name: str, problem: str) -> t.NoReturn:
        msg = (
            f"State for {self.label}: field '{field_name}' {problem}. The state file was not "
            "written by a compatible tap-marketo-activities; fix or remove that partition's "
            "entry (its bookmark), or pass the state this tap last emitted. Nothing was synced."
        )
        raise StateError(msg)

    def _read_time(self, value: t.Any, field_name: str) -> dt.datetime:
        if not isinstance(value, str):
            self._fail(field_name, f"must be an ISO 8601 date-time string, not {_short(value)}")
        try:
            when = parse_datetime(value)
        except (ValueError, OverflowError):
            self._fail(field_name, f"is not an ISO 8601 date-time with a zone: {_short(value)}")
        if not EARLIEST <= when <= LATEST:
            # Windows subtract the lookback and sets store epoch seconds: a year-1 bookmark
            # would overflow mid-run, after other streams had already emitted.
            self._fail(field_name, f"is {value!r}, outside 1970-01-01 to 9999-12-30")
        return when

    def _read_bookmark(self) -> dt.datetime | None:
        value = self.state.get("replication_key_value")
        if value is None:
            return None
        key = self.state.get("replication_key", REPLICATION_KEY)
        if key != REPLICATION_KEY:
            self._fail("replication_key", f"is {_short(key)}, expected {REPLICATION_KEY!r}")
        return self._read_time(value, "replication_key_value")

    def _check_version(self, blob: t.Any, field_name: str) -> dict[str, t.Any]:
        if not isinstance(blob, dict):
            self._fail(field_name, "must be an object")
        version = blob.get("v")
        if type(version) is not int or version != STATE_VERSION:  # True == 1 in Python
            self._fail(
                f"{field_name}.v",
                f"is {_short(version)}; this tap reads state format {STATE_VERSION}",
            )
        return blob

    def _read_set(self, text: t.Any, field_name: str) -> OverlapSet:
        return self._decode(text, field_name, OverlapSet.decode, "an overlap set")

    def _read_tally(self, text: t.Any, field_name: str) -> Tally | None:
        if text is None:
            return None
        return self._decode(text, field_name, Tally.decode, "a tally")

    def _decode(self, text: t.Any, field_name: str, decode: t.Callable[[str], _D], what: str) -> _D:
        """An encoded set or tally; any problem names the field (never a traceback)."""
        if not isinstance(text, str):
            self._fail(field_name, f"must be a string, not {_short(text)}")
        try:
            return decode(text)
        except (OverlapSetError, TallyError) as exc:
            self._fail(field_name, f"is not {what} this tap can read ({exc})")
        except (ValueError, zlib.error):
            self._fail(field_name, f"is corrupted (not {what} encoded by this tap)")

    def _read_overlap(self) -> OverlapSet:
        blob = self.state.get("overlap")
        self.overlap_since: dt.datetime | None = None
        self.overlap_tally = Tally()
        if blob is None:
            return OverlapSet()
        blob = self._check_version(blob, "overlap")
        if blob.get("since") is not None:
            self.overlap_since = self._read_time(blob["since"], "overlap.since")
        self.overlap_tally = self._read_tally(blob.get("tally"), "overlap.tally") or Tally()
        return self._read_set(blob.get("keys"), "overlap.keys")

    def _read_cursor(self) -> Cursor | None:
        blob = self.state.get("cursor")
        if blob is None:
            return None
        blob = self._check_version(blob, "cursor")
        token = blob.get("token")
        if not isinstance(token, str) or not token:
            self._fail("cursor.token", "must be a non-empty string")
        if len(token) > MAX_TOKEN_CHARS:
            self._fail("cursor.token", f"is {len(token)} characters, over {MAX_TOKEN_CHARS}")
        max_seen = blob.get("max_seen")
        pending = blob.get("pending")
        return Cursor(
            token=token,
            window_start=self._read_time(blob.get("window_start"), "cursor.window_start"),
            max_seen=None if max_seen is None else self._read_time(max_seen, "cursor.max_seen"),
            pending=None if pending is None else self._read_set(pending, "cursor.pending"),
            tally=self._read_tally(blob.get("tally"), "cursor.tally"),
        )
