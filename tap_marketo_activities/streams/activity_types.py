"""``activity_types``: the instance's activity types, a full-table stream read once per run."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_marketo_activities.streams.client import MarketoStream
from tap_marketo_activities.streams.schemas import ATTRIBUTE_TYPE

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.helpers.types import Context


class ActivityTypesStream(MarketoStream):
    """Every activity type the instance lists, standard and custom."""

    name = "activity_types"
    path = "/v1/activities/types.json"
    primary_keys = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType, required=True),
        th.Property("description", th.StringType),
        th.Property("apiName", th.StringType),
        th.Property("primaryAttribute", ATTRIBUTE_TYPE),
        th.Property("attributes", th.ArrayType(ATTRIBUTE_TYPE)),
    ).to_dict()

    def fetch(self) -> list[dict[str, t.Any]]:
        """One types.json call (the run context keeps the answer for the run)."""
        return [row for row in self.fetch_result(self.path) if "id" in row]

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Emit the cached list, counted in the run summary like every other stream."""
        counter = self.api.stats.records
        for row in self.run.activity_types.rows:
            yield row
            counter[self.name] += 1
