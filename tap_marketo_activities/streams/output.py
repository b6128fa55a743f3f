"""Writing another stream's Singer messages from inside a walk, with public SDK parts only.

The per-type tables are filled by the ``activities`` walk (one read serves both shapes),
so their SCHEMA and RECORD messages are written here rather than by the SDK's own sync
of each stream. What the SDK would do per message is repeated with its public pieces:
the catalog's field selection (``Stream.mask``), the stream maps (aliases, filters,
flattening) and the tap's message writer. Type conformance is not repeated: the typed
rows are built to their schema's types by ``typed.py``.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk import singerlib
from singer_sdk.mapper import RemoveRecordTransform

if t.TYPE_CHECKING:
    from tap_marketo_activities.streams.client import MarketoStream


def write_schema(stream: MarketoStream) -> None:
    """The stream's SCHEMA message(s), one per stream map, as the SDK writes them."""
    bookmark_keys = [stream.replication_key] if stream.replication_key else None
    for stream_map in stream.stream_maps:
        if isinstance(stream_map, RemoveRecordTransform):
            continue
        stream.run.message_writer.write_message(
            singerlib.SchemaMessage(
                stream_map.stream_alias,
                stream_map.transformed_schema,
                stream_map.transformed_key_properties,
                bookmark_keys,
            )
        )


def write_record(stream: MarketoStream, row: dict[str, t.Any]) -> None:
    """One row as RECORD message(s): deselected fields dropped, then every stream map."""
    mask = stream.mask
    for name in [name for name in row if not mask[("properties", name)]]:
        del row[name]
    extracted = dt.datetime.now(dt.timezone.utc)
    for stream_map in stream.stream_maps:
        mapped = stream_map.transform(row)
        if mapped is not None:
            stream.run.message_writer.write_message(
                singerlib.RecordMessage(
                    stream=stream_map.stream_alias, record=mapped, time_extracted=extracted
                )
            )
