"""The state a run starts from: parsed, unwrapped from Meltano's export, checked before any call.

The state file is input a person (or a script, or an attacker) hands the tap, and a
state the tap misreads either re-sends everything from ``start_date`` or skips rows
for good. So every shape is checked here, before the first call to Marketo, and a
state the tap cannot use stops the run with one line naming the stream, the
partition and the field. An empty object (``{}``) is the one way to say "no state";
an empty file, ``null``, ``[]`` or a JSON string are refused, because each of them is
far more often a broken pipeline than an intent to start over.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import typing as t

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.sources.bulk.state_check import check_bulk
from tap_marketo_activities.sync.incremental import PartitionSync
from tap_marketo_activities.sync.leads_state import check_leads_state

# Deeper than any state this tap writes (7 levels with Meltano's wrapper), shallow enough
# that copying or writing the state back can never exhaust Python's recursion limit.
MAX_DEPTH = 16
# Marketo accepts at most 10 activity types per call; a group is one call's types.
MAX_TYPES_PER_GROUP = 10
MAX_TYPE_ID = 2**31 - 1

INCREMENTAL_STREAMS = ("activities", "lead_changes", "deleted_leads")
#: leads and merged_leads exist when leads_stream is on (leads/streams.py).
STREAMS = ("activity_types", *INCREMENTAL_STREAMS, "leads", "merged_leads")
TOP_LEVEL_KEYS = frozenset({"bookmarks", "currently_syncing"})
#: The per-type tables (typed.py): the SDK keeps an entry for each; their progress is the
#: `activities` partitions', so nothing in the entry is read.
_TYPED_TABLE = re.compile(r"activities_[a-z0-9_]{1,200}")

_FIX = "Pass the state this tap last emitted, or {} to start from start_date."


def _kind(value: t.Any) -> str:
    """A JSON type name for messages, never the value itself (it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _fail(where: str, field: str, problem: str) -> t.NoReturn:
    raise StateError(f"State for {where}: field '{field}' {problem}. {_FIX}")


def parse_state_text(text: str, option: str = "--state") -> dict[str, t.Any]:
    """The parsed state document; refuse a blank file or anything but a JSON object.

    A JSON string in particular must stop here: the SDK takes a string state as the
    path of another file.
    """
    if not text.strip():
        msg = (
            f"The {option} file is empty. Pass the state this tap last emitted, or a file "
            "holding {} to start from start_date."
        )
        raise StateError(msg)
    try:
        document = json.loads(text)
    except RecursionError:
        msg = f"The {option} file nests deeper than any state this tap writes. {_FIX}"
        raise StateError(msg) from None
    except ValueError as exc:
        msg = f"The {option} file is not valid JSON ({exc}). {_FIX}"
        raise StateError(msg) from None
    if not isinstance(document, dict):
        msg = (
            f"The {option} file holds {_kind(document)}, not a Singer state object "
            '({"bookmarks": {...}}). ' + _FIX
        )
        raise StateError(msg)
    _check_depth(document)  # before anything copies or re-serialises it recursively
    return document


def _where(path: tuple[str, ...]) -> tuple[str, str]:
    """(where, field) naming a place in the document for a message."""
    keys = [p for p in path if p != "singer_state"]
    if keys[:1] == ["bookmarks"] and len(keys) > 1:
        return f"stream '{keys[1]}'", ".".join(keys[2:]).replace(".[", "[") or keys[1]
    return "the document", ".".join(keys[:3]).replace(".[", "[")


def _check_depth(document: t.Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and numbers that are not finite (NaN, Infinity,
    1e400): Python reads them, but no JSON writer can write them back, so the state the run
    would emit could never be read again. Walks iteratively (no recursion to exhaust).
    """
    stack: list[tuple[t.Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            where, field = _where(path)
            _fail(where, field[:200], f"is {value!r}, not a finite number")
        if isinstance(value, dict):
            children = [(v, (*path, str(k)[:40])) for k, v in value.items()]
        elif isinstance(value, list):
            children = [(v, (*path, f"[{i}]")) for i, v in enumerate(value)]
        else:
            continue
        if len(path) >= MAX_DEPTH:
            keys = [p for p in path if p != "singer_state"]
            where = f"stream '{keys[1]}'" if keys[:1] == ["bookmarks"] else "the document"
            field = ".".join(keys[2:5] if keys[:1] == ["bookmarks"] else keys[:3])
            _fail(where, field.replace(".[", "["), f"nests deeper than {MAX_DEPTH} levels")
        stack.extend((child, child_path) for child, child_path in children)


def check_state(state: t.Any) -> dict[str, t.Any]:
    """The Singer state inside ``state``, every stream, partition and field checked.

    Accepts a Singer state or Meltano's export of one (``{"singer_state": {...}}``).
    Raises :class:`StateError` naming the stream, partition and field of the first problem.
    """
    if not isinstance(state, dict):
        msg = f'The state is {_kind(state)}, not a Singer state object ({{"bookmarks": ...}}). '
        raise StateError(msg + _FIX)
    _check_depth(state)
    if "singer_state" in state:
        if not isinstance(state["singer_state"], dict):
            _fail(
                "Meltano's state export",
                "singer_state",
                f"must be the Singer state object, not {_kind(state['singer_state'])}",
            )
        state = state["singer_state"]
    unknown = sorted(str(key) for key in state if key not in TOP_LEVEL_KEYS)
    if unknown:
        _fail(
            "the document", unknown[0][:60], "is not part of a Singer state (expected 'bookmarks')"
        )
    syncing = state.get("currently_syncing")
    if syncing is not None and not isinstance(syncing, str):
        _fail("the document", "currently_syncing", f"must be a stream name, not {_kind(syncing)}")
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        _fail(
            "the document",
            "bookmarks",
            f"must be an object, not {_kind(bookmarks)}: this is not a Singer state",
        )
    for name, stream_state in bookmarks.items():
        if name not in STREAMS and not _TYPED_TABLE.fullmatch(str(name)):
            _fail(
                f"stream '{str(name)[:60]}'",
                "bookmarks",
                f"names a stream this tap does not have (it has {', '.join(STREAMS)} and the "
                "per-type tables activities_<type>)",
            )
        if not isinstance(stream_state, dict):
            _fail(f"stream '{name}'", name, f"must be an object, not {_kind(stream_state)}")
        if name in INCREMENTAL_STREAMS:
            check_stream_state(name, stream_state)
        elif name == "leads":
            check_leads_state(stream_state, dt.datetime.now(dt.timezone.utc))
    return state


def _check_context(name: str, index: int, context: t.Any) -> str:
    """A partition's context: for activities, 1 to 10 distinct activity type ids."""
    where = f"stream '{name}' partition {index}"
    if not isinstance(context, dict):
        _fail(where, "context", f"must be an object, not {_kind(context)}")
    if set(context) != {"activity_type_ids"}:
        _fail(where, "context", "must hold exactly one field, 'activity_type_ids'")
    ids = context["activity_type_ids"]
    if not isinstance(ids, list) or not ids:
        _fail(where, "context.activity_type_ids", "must be a non-empty list of type ids")
    for type_id in ids:
        if type(type_id) is not int or not 0 < type_id <= MAX_TYPE_ID:
            _fail(
                where,
                "context.activity_type_ids",
                f"must hold positive integer type ids, not {_kind(type_id)} {str(type_id)[:20]}",
            )
    if len(ids) > MAX_TYPES_PER_GROUP:
        _fail(
            where,
            "context.activity_type_ids",
            f"lists {len(ids)} types; Marketo reads at most {MAX_TYPES_PER_GROUP} per call",
        )
    if len(set(ids)) != len(ids):
        _fail(where, "context.activity_type_ids", "lists a type twice")
    return f"stream '{name}' partition {{'activity_type_ids': {ids}}}"


def check_stream_state(name: str, stream_state: dict[str, t.Any]) -> None:
    """Parse every partition's bookmark, overlap set and cursor now, before any call."""
    partitions = stream_state.get("partitions", [])
    if not isinstance(partitions, list):
        _fail(f"stream '{name}'", "partitions", f"must be a list, not {_kind(partitions)}")
    if partitions and name != "activities":
        _fail(f"stream '{name}'", "partitions", "must be empty: this stream has no partitions")
    seen: set[str] = set()
    for index, partition in enumerate(partitions):
        where = f"stream '{name}' partition {index}"
        if not isinstance(partition, dict):
            _fail(where, "partitions", f"must hold objects, not {_kind(partition)}")
        context = partition.get("context")
        if not isinstance(context, dict):
            _fail(where, "context", f"must be an object, not {_kind(context)}")
        key = json.dumps(context, sort_keys=True)
        if key in seen:
            _fail(
                where,
                "partitions",
                "lists the same context twice; keep one entry per context (the one with the "
                "latest replication_key_value)",
            )
        seen.add(key)
    entries: list[tuple[str, dict[str, t.Any]]] = [(f"stream '{name}'", stream_state)]
    entries += [
        (_check_context(name, index, partition["context"]), partition)
        for index, partition in enumerate(partitions)
    ]
    fields = stream_state.get("lead_change_fields")
    if fields is not None and (
        not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
    ):
        _fail(f"stream '{name}'", "lead_change_fields", "must be a list of field names")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    now = dt.datetime.now(dt.timezone.utc)
    for label, entry in entries:
        if "bulk" in entry:
            check_bulk(label, entry["bulk"], now)
        if entry.get("overlap") is not None and entry.get("replication_key_value") is None:
            # The tap writes both together; without the bookmark the pass would restart
            # from start_date and re-send everything the overlap set does not cover.
            _fail(label, "replication_key_value", "is missing beside an overlap set")
        PartitionSync(
            dict(entry),
            label=label,
            start_date=epoch,
            lookback=dt.timedelta(),
            run_started=lambda: epoch,
        )


def read_json_option(handle: t.IO[str], option: str) -> t.Any:
    """Parse a --state/--catalog file, naming the option when it is not usable."""
    text = handle.read()
    if option == "--state":
        return parse_state_text(text, option)
    try:
        return json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError) as exc:
        msg = f"The {option} file is not valid JSON ({exc}); pass a file this tap wrote."
        raise StateError(msg) from None
