"""Window, overlap dedup, cursor and recovery time for one partition (pure logic).

Marketo commits an activity only when the work behind it finishes, so a row
stamped 13:45 may first become visible at 14:10, behind rows stamped later. A
bookmark alone would skip it. Each pass therefore:

* starts ``lookback`` before the **bookmark** (the max ``activityDate`` delivered),
  or at ``start_date`` where there is no bookmark, so late commits are read again;
* skips rows whose key is in the **overlap set** (keys already delivered whose
  ``activityDate`` is inside the next window), so the re-read is not re-sent;
* records a **cursor** (the last fully emitted page's ``nextPageToken``) after every
  page, so a stopped run resumes there; if Marketo refuses the cursor, the pass
  restarts from the **recovery time**: the max ``activityDate`` delivered so far
  (this pass included) minus the lookback, never before the pass's window start;
* asks for a STATE message only every ``STATE_EVERY_ROWS`` delivered rows (and at the
  pass's end, and before a clean stop): a SIGKILL re-sends at most the rows since the
  last STATE. Such a cadence STATE's cursor carries the keys the target has only when
  they fit the STATE budget (``page_done``'s ``key_room``), which keeps STATE a few
  percent of the records; the STATE that ends a pass always carries the overlap set, so
  clean scheduled runs stay exactly once;
* advances the bookmark only when the pass finishes, never beyond the moment
  the run started (by the server's clock), never backwards.

Everything lives in the SDK's per-partition state dict, beside the standard
``replication_key``/``replication_key_value`` pair that holds the bookmark.
"""

from __future__ import annotations

import datetime as dt
import typing as t
import zlib
from dataclasses import dataclass, field

from tap_marketo_activities.errors import ConfigError, StateError
from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.sync.overlap import OverlapSet, OverlapSetError, _Key, _normal_key

STATE_VERSION = 1
REPLICATION_KEY = "activityDate"

_T = t.TypeVar("_T")

#: Delivered rows of a partition between two STATE messages while its pass runs (the SDK's
#: own STATE_MSG_FREQUENCY): what a SIGKILL may re-send, never lose (issue 22).
STATE_EVERY_ROWS = 10_000
#: Marketo's largest page (batchSize 300): a STATE is asked for this many rows early, so
#: the rows since the last STATE plus a page in flight stay within STATE_EVERY_ROWS.
MAX_PAGE_ROWS = 300
#: At most this many keys go into the cursor of a STATE written before a clean stop or at
#: the cadence (about 11 bytes each: 50,000 keep that STATE well under 1 MB), so the run
#: after a SIGTERM, a 607, a Ctrl-C (or a SIGKILL after such a cadence STATE) re-sends
#: nothing; past it the cursor stays keyless.
MAX_STOP_KEYS = 50_000
#: What ``"pending":"..."`` adds to a STATE line around the keys' text, and a margin
#: (base64 needs no escaping).
PENDING_OVERHEAD = 16

# How far past the server's clock a bookmark may be before it is an error (the Date header
# has whole seconds; a bookmark is capped by the clock of the run that wrote it).
CLOCK_TOLERANCE = dt.timedelta(seconds=60)
# Marketo's paging tokens are tens of characters; anything near this is not one.
MAX_TOKEN_CHARS = 65_536
# Times a state may hold: epoch seconds stay non-negative, and a day of headroom at the
# top keeps ``bookmark + anything`` from overflowing.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc)


def _short(value: t.Any, limit: int = 60) -> str:
    """``repr`` cut to one short line: a hostile state must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass
class Cursor:
    """Where an unfinished pass stopped: enough to resume it or to recover.

    ``pending`` (the keys the pass delivered inside the lookback) is None in most cursors:
    carrying them in every STATE made STATE 0.6-2.9 times the records (issue 22). It is
    put into the state dict only by ``PartitionSync`` (a cadence STATE whose keys fit the
    budget, a clean stop), never by ``to_state``. Without it a resumed pass trusts the
    position token, and the keys it lacks are those of rows stamped up to ``max_seen``
    (see ``PartitionSync.keys_missing_until``).
    """

    token: str
    window_start: dt.datetime
    max_seen: dt.datetime | None
    pending: OverlapSet | None = None

    def to_state(self) -> dict[str, t.Any]:
        """JSON-ready form stored in the partition state."""
        blob: dict[str, t.Any] = {
            "v": STATE_VERSION,
            "token": self.token,
            "window_start": format_datetime(self.window_start),
            "max_seen": format_datetime(self.max_seen) if self.max_seen else None,
        }
        if self.pending is not None:
            blob["pending"] = self.pending.encode()
        return blob


@dataclass
class Start:
    """How a pass begins: a saved position token, or a date to mint one from."""

    since: dt.datetime
    token: str | None = None

    @property
    def resumes_cursor(self) -> bool:
        """True when the pass continues an interrupted one from its cursor."""
        return self.token is not None


@dataclass
class PassReport:
    """What a finished pass did, for logs and the run summary."""

    emitted: int = 0
    duplicates: int = 0
    max_lateness: dt.timedelta = field(default_factory=dt.timedelta)


class PartitionSync:
    """One pass over one partition, reading and writing its SDK state dict in place."""

    def __init__(
        self,
        state: dict[str, t.Any],
        *,
        label: str,
        start_date: dt.datetime,
        lookback: dt.timedelta,
        run_started: t.Callable[[], dt.datetime],
        resumable: bool = True,
    ) -> None:
        self.state = state
        # False in BATCH mode: rows reach the target only when the SDK writes a batch
        # file, after later pages have been read, so a per-page cursor could point past
        # rows the target never got.
        self.resumable = resumable
        self.label = label
        self.start_date = start_date
        self.lookback = lookback
        # A callable: the server's clock is known only after the first answer.
        self.run_started = run_started
        self.report = PassReport()
        #: ``report.emitted`` when the last STATE was asked for (see ``page_done``).
        self._emitted_at_last_state = 0
        #: Keys admitted since the last ``page_done``: rows the target may not have yet.
        self._page_keys: list[_Key] = []
        self.bookmark = self._read_bookmark()
        self.overlap = self._read_overlap()
        self.cursor = self._read_cursor()
        # What this pass has delivered so far (for dedup and the next overlap set).
        self.emitted = OverlapSet()
        self.max_seen: dt.datetime | None = None
        # Keys stamped from here on are kept for the whole pass: set by the bulk handover
        # when its REST walk must re-read from before ``max_seen - lookback``.
        self.prune_floor: dt.datetime | None = None
        self.window_start = self._initial_window_start()
        #: Rows stamped up to this were delivered by this pass before it was stopped, and
        #: their keys are not known (a keyless cursor): the pass's overlap set cannot vouch
        #: for them, so the STATE that ends it says so (``overlap.since``).
        self.keys_missing_until: dt.datetime | None = None
        if self.cursor:
            if self.cursor.pending is not None:
                self.emitted.update(self.cursor.pending)
            else:
                self.keys_missing_until = self.cursor.max_seen
            self.max_seen = self.cursor.max_seen

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
        if not isinstance(text, str):
            self._fail(field_name, f"must be a string, not {_short(text)}")
        try:
            return OverlapSet.decode(text)
        except OverlapSetError as exc:
            self._fail(field_name, f"is not an overlap set this tap can read ({exc})")
        except (ValueError, zlib.error):
            self._fail(field_name, "is corrupted (not an encoded overlap set)")

    def _read_overlap(self) -> OverlapSet:
        blob = self.state.get("overlap")
        self.overlap_since: dt.datetime | None = None
        if blob is None:
            return OverlapSet()
        blob = self._check_version(blob, "overlap")
        if blob.get("since") is not None:
            self.overlap_since = self._read_time(blob["since"], "overlap.since")
        return self._read_set(blob.get("keys"), "overlap.keys")

    def uncovered_overlap(self) -> tuple[dt.datetime, dt.datetime] | None:
        """The part of this window the overlap set cannot vouch for (after a lookback rise)."""
        if self.overlap_since is None or self.cursor is not None:
            return None
        if self.window_start < self.overlap_since:
            return self.window_start, self.overlap_since
        return None

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
        )

    # -- planning ----------------------------------------------------------------

    def _initial_window_start(self) -> dt.datetime:
        if self.cursor:
            return self.cursor.window_start
        if self.bookmark is None:
            return self.start_date
        return max(self.bookmark - self.lookback, self.start_date)

    def inherit(self, *, bookmark: dt.datetime, overlaps: list[t.Any]) -> None:
        """Start a fresh partition from another's progress (see ActivitiesStream)."""
        self.bookmark = bookmark
        for blob in overlaps:
            if blob is not None:
                checked = self._check_version(blob, "overlap")
                self.overlap.update(self._read_set(checked.get("keys"), "overlap.keys"))
        self.window_start = self._initial_window_start()

    def check_clock(self, now: dt.datetime) -> None:
        """Refuse a bookmark (or a cursor's window) later than Marketo's clock.

        No run can have delivered a row stamped after Marketo's present, so such a state
        was edited or belongs to another instance; reading from it would return nothing
        on every run, silently. ``now`` is the run's start by the server's ``Date``
        header; CLOCK_TOLERANCE absorbs that header's whole seconds.
        """
        limit = now + CLOCK_TOLERANCE
        for field_name, value in (
            ("replication_key_value", self.bookmark),
            ("cursor.window_start", self.cursor.window_start if self.cursor else None),
        ):
            if value is not None and value > limit:
                msg = (
                    f"State for {self.label}: field '{field_name}' is {format_datetime(value)}, "
                    f"later than Marketo's clock ({format_datetime(now)}); no run can have read "
                    "that far, and reading from there would return nothing on every run. Set "
                    "it to the last activityDate delivered (or remove that entry to start "
                    "from start_date). The state was left as it was."
                )
                raise StateError(msg)

    def start(self) -> Start:
        """Resume from the cursor if there is one, else read from the window start."""
        if self.cursor:
            return Start(since=self.window_start, token=self.cursor.token)
        return Start(since=self.window_start)

    def recovery_time(self) -> dt.datetime:
        """Where a refused cursor restarts: max delivered so far minus the lookback."""
        if self.max_seen is None:
            return self.window_start
        return max(self.window_start, min(self.max_seen, self.run_started()) - self.lookback)

    def fall_back(self) -> Start:
        """The cursor was refused: restart from the recovery time with a date token."""
        since = self.recovery_time()
        self.cursor = None
        return Start(since=since)

    # -- the pass ------------------------------------------------------------------

    def admit(self, key: str, when: dt.datetime) -> bool:
        """Decide whether a row is new (emit it) or a re-read (skip it).

        Rows stamped before the window are skipped too: a date token should not return
        them, but if Marketo's token only sets a starting position in its commit log, such
        rows are re-reads whose keys the overlap set has already let go.
        """
        normal = _normal_key(key)
        if when < self.window_start or self.overlap.has(normal) or self.emitted.has(normal):
            if when >= self.start_date:
                self.report.duplicates += 1
            return False
        # In this order: a stop between the two lines must not count the row as delivered
        # (a stop STATE leaves out the keys of the page in flight, ``_page_keys``).
        self._page_keys.append(normal)
        self.emitted.put(normal, when)
        self.report.emitted += 1
        if self.max_seen is None or when > self.max_seen:
            self.max_seen = when
        if self.bookmark is not None and when < self.bookmark:
            self.report.max_lateness = max(self.report.max_lateness, self.bookmark - when)
        return True

    def _horizon(self) -> dt.datetime | None:
        """Keys stamped before this can never be re-read by a later window."""
        if self.max_seen is None:
            return None
        horizon = min(self.max_seen, self.run_started()) - self.lookback
        return horizon if self.prune_floor is None else min(horizon, self.prune_floor)

    def page_done(
        self, next_token: str | None, key_room: t.Callable[[], int] | None = None
    ) -> bool:
        """Record the cursor after a page is fully emitted; True when a STATE must follow.

        The cursor in the state dict moves after every page (a small dict: token, window
        start, max delivered; no keys), so whatever STATE is written next, at the cadence
        or before a clean stop, resumes right after the last page the target has. A STATE
        is asked for once the next page could take the rows since the last one past
        ``STATE_EVERY_ROWS``: a SIGKILL re-sends fewer than that, and never loses a row. The
        pass's last page returns False: ``finish`` writes the STATE that ends the pass.

        That STATE's cursor also carries the keys the target has when they fit
        ``key_room()`` (bytes the STATE may grow by and still be written at once within
        its budget; asked only here, as it costs a look at the whole STATE): a SIGKILL
        after it then costs the run after the resumed one no re-send either (see
        ``_interim_keys``). Where they do not fit, the cursor stays keyless and the STATE
        is written all the same: keys never delay the cadence.
        """
        # Every row admitted so far has been written: none of the keys is in flight now.
        self._page_keys.clear()
        horizon = self._horizon()
        if horizon is not None:
            self.emitted.prune(horizon)
        if not next_token or not self.resumable:
            return False
        self.cursor = Cursor(
            token=next_token, window_start=self.window_start, max_seen=self.max_seen
        )
        self.state["cursor"] = self.cursor.to_state()
        if self.report.emitted - self._emitted_at_last_state > STATE_EVERY_ROWS - MAX_PAGE_ROWS:
            self._emitted_at_last_state = self.report.emitted
            if key_room is not None:
                self._interim_keys(key_room)
            return True
        return False

    def _interim_keys(self, key_room: t.Callable[[], int]) -> bool:
        """Give a cadence STATE's cursor the keys the target has, if they fit; True if so.

        Called right after ``page_done`` stored the keyless cursor, with no page in
        flight: ``emitted`` (pruned to the horizon) holds exactly the keys of rows this
        pass has written, never one the target may lack, and the resume path reads them
        as it reads a clean stop's (``cursor.pending``). The dict is replaced, not edited:
        the next page's cursor, keyless, replaces it again, so keys never outlive the
        token they belong to. A pass resumed from a keyless cursor lacks the keys from
        before it, so its cursors stay keyless (as in ``keys_for_stop``).
        """
        # Asked at every cadence STATE, keys or not: what it allows is measured from one
        # cadence STATE to the next (writer.py's ``state_room``).
        room = key_room()
        if room <= 0 or self.keys_missing_until is not None or len(self.emitted) > MAX_STOP_KEYS:
            return False
        try:
            text = self.emitted.encode()
        except OverlapSetError:
            return False  # the pass-end STATE says so, and stops (``finish``)
        if len(text) + PENDING_OVERHEAD > room:
            return False
        self.state["cursor"] = {**self.state["cursor"], "pending": text}
        return True

    def keys_for_stop(self) -> None:
        """Before a clean stop: give the state's cursor the keys the target has (if few).

        The run after it then resumes exactly where this one stopped and its last STATE
        vouches for the whole pass. Keys of the page in flight are left out (its rows may
        not all be written; the cursor re-reads that page). A pass resumed from a keyless
        cursor does not know the keys delivered before it, so its cursor stays keyless.
        """
        saved = self.state.get("cursor")
        if (
            self.cursor is None
            or not isinstance(saved, dict)
            or saved.get("token") != self.cursor.token
            or self.keys_missing_until is not None
        ):
            return
        pending = self.emitted.without(self._page_keys)
        if len(pending) > MAX_STOP_KEYS:
            return
        self.state["cursor"] = {**saved, "pending": pending.encode()}

    def _encoding(self, encode: t.Callable[[], _T]) -> _T:
        """Run an encoder; a set over the bounds stops the run instead of being written."""
        try:
            return encode()
        except OverlapSetError as exc:
            msg = (
                f"{self.label}: the overlap set {exc}, so the state could not be read back. "
                "Lower lookback_minutes; the bookmark was not moved."
            )
            raise ConfigError(msg) from None

    def finish(self) -> None:
        """The pass reached the end: promote the bookmark, keep the overlap, drop the cursor."""
        candidate = min(self.max_seen, self.run_started()) if self.max_seen else None
        bookmark = self.bookmark
        if candidate is not None and (bookmark is None or candidate > bookmark):
            bookmark = candidate
        if bookmark is not None:
            horizon = bookmark - self.lookback
            self.overlap.update(self.emitted)
            self.overlap.prune(horizon)
            self.bookmark = bookmark
            # Bookmark and overlap first, the cursor last: a SIGTERM in between writes a
            # state that resumes (from the cursor) or is complete, never one that re-reads.
            self.state["replication_key"] = REPLICATION_KEY
            self.state["replication_key_value"] = format_datetime(bookmark)
            since = horizon
            missing = self.keys_missing_until
            if missing is not None and missing >= horizon:
                # Resumed from a keyless cursor: the keys of rows this pass delivered up to
                # ``missing`` are not in the set, so the next run may send those once more
                # (it says so; targets that upsert on marketoGUID keep one). Never a loss.
                since = missing + dt.timedelta(seconds=1)
            self.state["overlap"] = {
                "v": STATE_VERSION,
                "since": format_datetime(since),
                "keys": self._encoding(self.overlap.encode),
            }
        self.state.pop("cursor", None)
        self.cursor = None


def lateness_warning(max_lateness: dt.timedelta, lookback: dt.timedelta) -> str | None:
    """Plain-words warning when rows arrive within 20 % of the lookback, else None."""
    if not lookback or max_lateness < lookback * 0.8:
        return None
    late = int(max_lateness.total_seconds() // 60)
    window = int(lookback.total_seconds() // 60)
    return (
        f"rows arrived up to {late} min late; lookback is {window} min; raise lookback_minutes "
        "so that rows committed even later are not missed"
    )
