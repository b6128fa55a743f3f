"""The tap's Singer message writer: the SDK's msgspec encoding, one write per batch of records.

The SDK's writers flush stdout after every message, so each RECORD costs a ``write``
system call of its own: 4 to 7 us of the tap's 30 to 40 us per record in the emit
benchmark (benchmarks/run_all.py --ab). This writer keeps RECORD lines in memory and
writes them together, whole lines only, before any other message (SCHEMA, STATE, ...),
whenever 64 KB have gathered, and when the process exits. Nothing a target relies on changes:

* every STATE still follows the records it covers, and is written (with them) at once;
* a process killed while records are held loses only records no STATE covers yet, which
  the next run reads again from that STATE, exactly as after a kill today;
* a kill never leaves half a line in the pipe for a target to choke on (each write holds
  complete lines; a pipe write of at most 64 KB is cut only if the kill lands inside it).

It also keeps the STATE stream within ``STATE_SHARE`` of the RECORD bytes (issue 22): every
STATE names every partition's state, so once a busy partition has ended its pass with a
large overlap set, each later STATE repeats it. A STATE over 4 KB that would take the STATE
bytes past the share (keeping room for one more of its size) is held back, and the newest
one held is written when a later one fits, or when the process exits. A held STATE is
always older than what follows it, so writing it late re-sends rows after a kill, never
loses one; a STATE the tap writes before a clean stop (``force_state``) is always written at once.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.singerlib import RecordMessage, StateMessage
from typing_extensions import override

if t.TYPE_CHECKING:
    import datetime as dt

    from singer_sdk.singerlib.encoding.simple import Message

#: Records are written once this many bytes of them have gathered (or before any other
#: message). 64 KB is a page of about 130 records: few calls, little held back.
BATCH_BYTES = 64 * 1024
#: The STATE bytes a run may write, as a share of its RECORD bytes (see the docstring).
STATE_SHARE = 0.05
#: A STATE this small is written at once whatever the share: the cadence's and small
#: runs' STATEs (a cursor, a few bookmarks), which only the overlap sets make large.
SMALL_STATE = 4096
#: A cadence STATE takes its cursor's keys only while this many more STATEs of its grown
#: size would still fit the share: the one that ends its pass, and the run's last (see
#: ``state_room``).
KEYS_RESERVE = 2
#: Nor may keys take a STATE line past this (issue 22: at most 1 MB a message).
LARGEST_KEYED_STATE = 1_000_000


class BatchingWriter(MsgSpecWriter):
    """msgspec-encoded Singer messages; RECORD lines written in batches (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._held = bytearray()
        #: RECORD and STATE bytes written so far (STATE_SHARE), and a STATE held back.
        self.record_bytes = 0
        self.state_bytes = 0
        self._held_state: bytes | bytearray | None = None
        #: ``record_bytes`` at the last ``state_room``: what the records since have earned.
        self._records_at_last_room = 0
        #: Set before a STATE that must be written at once (the tap is about to stop).
        self.force_state = False
        atexit.register(self._flush_at_exit)

    @override
    def write_message(self, message: Message) -> None:
        """Hold a RECORD line; write anything else at once, after the records held."""
        line = self.format_message(message)
        if isinstance(message, StateMessage):
            self._write_state(line)
            return
        self._held += line
        if not isinstance(message, RecordMessage):
            self.flush()
            return
        self.record_bytes += len(line)
        if len(self._held) >= BATCH_BYTES:
            self.flush()

    def _write_state(self, line: bytes | bytearray) -> None:
        """Write a STATE line now if it fits STATE_SHARE (or is forced), else hold it back."""
        size = len(line)
        if (
            self.force_state
            or size <= SMALL_STATE
            or self.state_bytes + 2 * size <= STATE_SHARE * self.record_bytes
        ):
            self.force_state = False
            self._held_state = None
            if self._held and not self._held.endswith(b"\n"):
                # A signal handler's STATE (a clean stop) landed between a record's encoding
                # and its newline (``write_record``): without this the two would share a line
                # that no target can parse. The handler exits, so no second newline follows.
                self._held += b"\n"
            self._held += line
            self.state_bytes += size
            self.flush()
        else:
            self._held_state = line

    def state_room(self, size: int) -> int:
        """Bytes a STATE line of ``size`` bytes may grow by and still be written at once.

        Asked once before every cadence STATE (incremental.py) whether its cursor may carry
        the keys: worth it (a SIGKILL after that STATE then costs the next scheduled run no
        re-send), but never at the price of the cadence or of the share. So the grown line,
        with ``KEYS_RESERVE`` more lines of its size, must fit both

        * the share, all STATE bytes so far counted: then ``_write_state`` writes it at
          once, and the STATE stream stays within STATE_SHARE;
        * the share of the records written since the last time this was asked: keys are
          paid from what those records earned, never from the room earlier records left,
          which later STATEs need when they repeat finished partitions' overlap sets
          (measured on the 1,000,000-row day: spending that room on keys held later STATEs
          back until 19,800 rows lay between two of them);

        and it stays within ``LARGEST_KEYED_STATE``.
        """
        earned = STATE_SHARE * (self.record_bytes - self._records_at_last_room)
        self._records_at_last_room = self.record_bytes
        left = STATE_SHARE * self.record_bytes - self.state_bytes
        fits = min(earned, left) / (1 + KEYS_RESERVE)
        return max(0, min(int(fits), LARGEST_KEYED_STATE) - size)

    def tally_room(self, size: int) -> int:
        """Bytes a STATE line of ``size`` bytes may grow by and still be written at once.

        For a cadence STATE's tally (sync/tally.py), which takes about 11 bytes a second
        whatever the rows: far less than keys, and it does not grow the STATEs that end
        a pass, so it needs no reserve beyond what ``_write_state`` itself checks. Asking
        spends nothing (unlike ``state_room``).
        """
        left = (STATE_SHARE * self.record_bytes - self.state_bytes) / 2
        return max(0, min(int(left), LARGEST_KEYED_STATE) - size)

    def write_record(
        self, stream: str, record: t.Mapping[str, t.Any], time_extracted: dt.datetime
    ) -> None:
        """A RECORD line, as :meth:`write_message` writes a ``RecordMessage`` of these.

        The same bytes (the SDK's encoder, the message's keys in its order) without the
        message object and its dict: about 0.9 us of a record's cost. ``time_extracted``
        must be in UTC, as the message would convert it.
        """
        message = {
            "type": "RECORD",
            "stream": stream,
            "record": record,
            "time_extracted": time_extracted,
        }
        before = len(self._held)
        encoder.encode_into(message, self._held, -1)
        self._held += b"\n"
        self.record_bytes += len(self._held) - before
        if len(self._held) >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the lines held, if any, and flush stdout."""
        if not self._held:
            return
        if not self._held.endswith(b"\n"):
            # A stop between a record's encoding and its newline (see ``_write_state``):
            # the run is ending, so the newline would never come.
            self._held += b"\n"
        # Written, then dropped: a signal handler writing a STATE in between writes these
        # lines twice (a re-send), never none of them before that STATE (a loss).
        sys.stdout.buffer.write(self._held)
        self._held = bytearray()
        sys.stdout.flush()

    def _flush_at_exit(self) -> None:
        """The STATE held back, if any, and the records held when the run ended.

        Records after the last STATE (it failed, or was stopped): no STATE covers them, so
        a target may or may not get them; a closed pipe here is not worth a traceback (the
        run has already said why it stopped).
        """
        if self._held_state is not None:  # the newest STATE: it covers everything before it
            self._held += self._held_state
            self.state_bytes += len(self._held_state)
            self._held_state = None
        # ValueError: stdout is already closed.
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.flush()
