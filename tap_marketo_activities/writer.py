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
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

if t.TYPE_CHECKING:
    import datetime as dt

    from singer_sdk.singerlib.encoding.simple import Message

#: Records are written once this many bytes of them have gathered (or before any other
#: message). 64 KB is a page of about 130 records: few calls, little held back.
BATCH_BYTES = 64 * 1024


class BatchingWriter(MsgSpecWriter):
    """msgspec-encoded Singer messages; RECORD lines written in batches (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._held = bytearray()
        atexit.register(self._flush_at_exit)

    @override
    def write_message(self, message: Message) -> None:
        """Hold a RECORD line; write anything else at once, after the records held."""
        self._held += self.format_message(message)
        if not isinstance(message, RecordMessage) or len(self._held) >= BATCH_BYTES:
            self.flush()

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
        encoder.encode_into(message, self._held, -1)
        self._held += b"\n"
        if len(self._held) >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the lines held, if any, and flush stdout."""
        if not self._held:
            return
        if not self._held.endswith(b"\n"):
            # A signal handler's STATE (tap._stop_on_signal) between a record's encoding
            # and its newline: that handler exits, so the newline would never come.
            self._held += b"\n"
        # Written, then dropped: a signal handler writing a STATE in between writes these
        # lines twice (a re-send), never none of them before that STATE (a loss).
        sys.stdout.buffer.write(self._held)
        self._held = bytearray()
        sys.stdout.flush()

    def _flush_at_exit(self) -> None:
        """Records held when the run ended without a last STATE (it failed, or was stopped).

        No STATE covers them, so a target may or may not get them; a closed pipe here is
        not worth a traceback (the run has already said why it stopped).
        """
        # ValueError: stdout is already closed.
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.flush()
