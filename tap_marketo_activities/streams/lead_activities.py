"""``lead_changes`` and ``deleted_leads``: one endpoint each, walked as every activity stream is."""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_marketo_activities.streams.schemas import ACTIVITY_PROPERTIES
from tap_marketo_activities.streams.walk import IncrementalStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_marketo_activities.sync.incremental import PartitionSync

DELETIONS_RETAINED = dt.timedelta(days=14)


class LeadChangesStream(IncrementalStream):
    """Changes to the configured lead fields (types 12 New Lead and 13 Change Data Value)."""

    name = "lead_changes"
    path = "/v1/activities/leadchanges.json"
    schema = th.PropertiesList(
        *ACTIVITY_PROPERTIES,
        th.Property(
            "fields",
            th.ArrayType(
                th.ObjectType(
                    th.Property("id", th.IntegerType),
                    th.Property("name", th.StringType),
                    th.Property("newValue", th.StringType),
                    th.Property("oldValue", th.StringType),
                )
            ),
            description="The lead fields this activity changed",
        ),
    ).to_dict()

    @override
    def get_url_params(self, context: Context | None, next_page_token: str | None) -> dict:
        """Add the lead fields to watch (the endpoint requires at least one)."""
        params = super().get_url_params(context, next_page_token)
        params["fields"] = ",".join(self.config["lead_change_fields"])
        return params

    @override
    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """Remember the fields read; say so when one is added (its history is not read)."""
        fields = sorted(self.config["lead_change_fields"])
        added = sorted(set(fields) - set(sync.state.get("lead_change_fields") or fields))
        if added and sync.bookmark is not None:
            self.logger.warning(
                "lead_change_fields now includes %s: their changes from after %s are read, "
                "earlier ones are not. To backfill them, clear the lead_changes state.",
                ", ".join(added),
                sync.window_start.isoformat(),
            )
        sync.state["lead_change_fields"] = fields

    @override
    def fatal_message(
        self, code: str, message: str, request_id: str, advice: str, path: str | None = None
    ) -> str:
        """Name the setting when Marketo rejects a field (of leadchanges.json itself)."""
        if code in {"1003", "1006"} and path in (None, self.path):
            fields = ", ".join(self.config["lead_change_fields"])
            return (
                f"Marketo rejected lead_change_fields ({fields}): {code} {message} (requestId "
                f"{request_id}). Use lead fields' REST API names (Admin > Field Management > "
                "Export Field Names) and remove the one named above."
            )
        return super().fatal_message(code, message, request_id, advice, path)


class DeletedLeadsStream(IncrementalStream):
    """Leads deleted from the instance (type 37); Marketo prunes them after 14 days."""

    name = "deleted_leads"
    path = "/v1/activities/deletedleads.json"

    @override
    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """Warn when the bookmark is older than Marketo keeps deletions."""
        if sync.bookmark is not None and self.api.now() - sync.bookmark > DELETIONS_RETAINED:
            self.logger.warning(
                "The deleted_leads bookmark (%s) is more than 14 days old; Marketo may already "
                "have pruned deletions from before %s. Run at least every few days to catch "
                "every deletion.",
                sync.bookmark.isoformat(),
                (self.api.now() - DELETIONS_RETAINED).date().isoformat(),
            )
