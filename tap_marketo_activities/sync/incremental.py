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

from tap_marketo_activities.errors import ConfigError, StateError
from tap_marketo_activities.records import format_datetime
from tap_marketo_activities.sync.cursor import (
    STATE_VERSION,
    Cursor,
    PassReport,
    Start,
    lateness_warning,
)
from tap_marketo_activities.sync.gap import MAX_HELD, GapResolver, Outcome
from tap_marketo_activities.sync.overlap import OverlapSet, OverlapSetError, _Key, _normal_key
from tap_marketo_activities.sync.partition_state import REPLICATION_KEY, PartitionStateReader
from tap_marketo_activities.sync.tally import Tally

__all__ = ["REPLICATION_KEY", "STATE_EVERY_ROWS", "PartitionSync", "Start", "lateness_warning"]


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


class PartitionSync(PartitionStateReader):
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
        #: Rows the target has from before this pass's cursor, known only by their tally.
        self.unknown = Tally()
        if self.cursor:
            if self.cursor.pending is not None:
                self.emitted.update(self.cursor.pending)
            if self.cursor.tally is not None:
                self.unknown = self.cursor.tally
            elif self.cursor.pending is None:
                self.keys_missing_until = self.cursor.max_seen  # a cursor of an older tap
            self.max_seen = self.cursor.max_seen
        gap = self.overlap_tally.copy()
        gap.update(self.unknown)
        gap.prune(self.window_start)
        #: Rows of tallied seconds held until proven delivered or new (``sync/gap.py``).
        self.gap = GapResolver(gap)
        #: False while no second is tallied (the common case): ``take`` skips the lookup.
        self._tallied = bool(gap)
        #: The token of the page being read (set by the walk at its first page).
        self.page_token: str | None = self.cursor.token if self.cursor else None

    def uncovered_overlap(self) -> tuple[dt.datetime, dt.datetime] | None:
        """The part of this window the overlap set cannot vouch for (after a lookback rise)."""
        if self.overlap_since is None or self.cursor is not None:
            return None
        if self.window_start < self.overlap_since:
            return self.window_start, self.overlap_since
        return None

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
                tally = self._read_tally(checked.get("tally"), "overlap.tally")
                if tally is not None:
                    self.gap.open.update(tally)
                    self.gap.carry.update(tally)
                    self._tallied = True
        self.window_start = self._initial_window_start()
        self.gap.open.prune(self.window_start)

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
        if self._known(normal, when):
            return False
        self._deliver(normal, when)
        return True

    def _known(self, normal: _Key, when: dt.datetime) -> bool:
        """A row before the window, or one a key says was delivered: counted, skipped."""
        if when < self.window_start or self.overlap.has(normal) or self.emitted.has(normal):
            if when >= self.start_date:
                self.report.duplicates += 1
            return True
        return False

    def take(self, key: str, when: dt.datetime, record: _T) -> t.Sequence[_T]:
        """:meth:`admit` for the REST walk: the records to emit now, held ones included.

        A row of a second a tally names (``sync/gap.py``) is held rather than emitted
        until its second proves which rows the target has; proven rows are skipped.
        """
        normal = _normal_key(key)
        if self._known(normal, when):
            return ()
        if self._tallied:
            stamp = int(when.timestamp())
            if self.gap.suspect(stamp):
                if self.gap.holds(normal):
                    return ()  # the same row twice in one chain
                return self._apply(self.gap.hold(normal, stamp, when, record, self.page_token))
        self._deliver(normal, when)
        return (record,)

    def _apply(self, outcome: Outcome) -> list[t.Any]:
        for row in outcome.delivered:
            # The target has it: its key is known again, for the overlap set.
            self.emitted.put(row.key, row.when)
            if row.when >= self.start_date:
                self.report.duplicates += 1
        for row in outcome.emit:
            self._deliver(row.key, row.when)
        return [row.record for row in outcome.emit]

    def release_held(self, next_token: str | None) -> list[t.Any]:
        """Records held back that must go out now: a STATE is due, or too many are held.

        The STATE's cursor then passes no row the target lacks; those the held rows'
        seconds had delivered before are sent again (counted in ``gap.flushed``).
        """
        if not self.gap.holding:
            return []
        if self.gap.holding <= MAX_HELD and not self._state_due(next_token):
            return []
        return self._apply(Outcome(self.gap.flush(), []))

    def release_all(self) -> list[t.Any]:
        """Records still held when the walk ends: emitted before the pass finishes."""
        return self._apply(Outcome(self.gap.flush(), []))

    def _deliver(self, normal: _Key, when: dt.datetime) -> None:
        # In this order: a stop between the two lines must not count the row as delivered
        # (a stop STATE leaves out the keys of the page in flight, ``_page_keys``).
        self._page_keys.append(normal)
        self.emitted.put(normal, when)
        self.report.emitted += 1
        if self.max_seen is None or when > self.max_seen:
            self.max_seen = when
        if self.bookmark is not None and when < self.bookmark:
            self.report.max_lateness = max(self.report.max_lateness, self.bookmark - when)

    def _horizon(self) -> dt.datetime | None:
        """Keys stamped before this can never be re-read by a later window."""
        if self.max_seen is None:
            return None
        horizon = min(self.max_seen, self.run_started()) - self.lookback
        return horizon if self.prune_floor is None else min(horizon, self.prune_floor)

    def page_done(
        self,
        next_token: str | None,
        key_room: t.Callable[[], int] | None = None,
        tally_room: t.Callable[[], int] | None = None,
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
        self.page_token = next_token
        if not next_token or not self.resumable:
            return False
        holding, oldest = self.gap.oldest_token()
        if holding:
            # Rows of this page or earlier ones are held, not yet sent: a stop must re-read
            # from the page the oldest came from (``sync/gap.py``).
            if oldest is None:
                # Held from a page whose token is not known: a stop restarts the pass.
                self.state.pop("cursor", None)
                self.cursor = None
                return False
            next_token = oldest
        self.cursor = Cursor(
            token=next_token, window_start=self.window_start, max_seen=self.max_seen
        )
        self.state["cursor"] = self.cursor.to_state()
        if holding:
            return False  # release_held empties the hold before any cadence STATE
        if self._state_due(next_token):
            self._emitted_at_last_state = self.report.emitted
            if key_room is not None:
                self._interim_keys(key_room, tally_room or key_room)
            return True
        return False

    def _state_due(self, next_token: str | None) -> bool:
        """True once the next page could take the rows since the last STATE past the cadence."""
        return (
            bool(next_token)
            and self.resumable
            and self.report.emitted - self._emitted_at_last_state > STATE_EVERY_ROWS - MAX_PAGE_ROWS
        )

    def _interim_keys(self, key_room: t.Callable[[], int], tally_room: t.Callable[[], int]) -> bool:
        """Give a cadence STATE's cursor the keys the target has, if they fit; True if so.

        Called right after ``page_done`` stored the keyless cursor, with no page in
        flight: ``emitted`` (pruned to the horizon) holds exactly the keys of rows this
        pass has written, never one the target may lack, and the resume path reads them
        as it reads a clean stop's (``cursor.pending``). The dict is replaced, not edited:
        the next page's cursor, keyless, replaces it again, so keys never outlive the
        token they belong to. A pass resumed from a cursor of an older tap (neither keys
        nor tally) lacks the keys from before it, so its cursors stay keyless.

        Where the keys do not fit ``key_room()``, their tally (``sync/tally.py``, about 11
        bytes a second) goes instead if it fits ``tally_room()``: what the STATE may grow
        by and still be written at once. A tally does not grow the STATE that ends the
        pass, so it needs none of the keys' reserve.
        """
        # Asked at every cadence STATE, keys or not: what it allows is measured from one
        # cadence STATE to the next (writer.py's ``state_room``).
        room = key_room()
        if self.keys_missing_until is not None:
            return False
        unknown = self._unknown_tally()
        if room > 0 and len(self.emitted) <= MAX_STOP_KEYS:
            try:
                text = self.emitted.encode()
            except OverlapSetError:
                return False  # the pass-end STATE says so, and stops (``finish``)
            added = {"pending": text, **({"tally": unknown.encode()} if unknown else {})}
            if sum(len(v) + PENDING_OVERHEAD for v in added.values()) <= room:
                self.state["cursor"] = {**self.state["cursor"], **added}
                return True
        # The keys do not fit: their tally (about 11 bytes a second) lets the run after a
        # SIGKILL prove which re-read rows the target has (``sync/gap.py``).
        unknown.update(Tally.of(self.emitted))
        text = unknown.encode()
        if len(text) + PENDING_OVERHEAD > tally_room():
            return False
        self.state["cursor"] = {**self.state["cursor"], "tally": text}
        return True

    def _unknown_tally(self) -> Tally:
        """The rows from before this pass's cursor known only by tally, within the horizon."""
        unknown = self.unknown.copy()
        horizon = self._horizon()
        if horizon is not None:
            unknown.prune(horizon)
        return unknown

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
        unknown = self._unknown_tally()
        if len(pending) > MAX_STOP_KEYS:
            unknown.update(Tally.of(pending))
            self.state["cursor"] = {**saved, "tally": unknown.encode()}
            return
        added = {"pending": pending.encode(), **({"tally": unknown.encode()} if unknown else {})}
        self.state["cursor"] = {**saved, **added}

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
            # Seconds tallied before (a killed pass's rows, known by tally only) that this
            # pass did not settle: the next run proves its re-reads against them.
            carried = self.gap.carry.copy()
            carried.prune(horizon)
            if carried:
                self.state["overlap"]["tally"] = carried.encode()
        self.state.pop("cursor", None)
        self.cursor = None
