"""tap-marketo-activities: settings, streams, and how a run starts and ends."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
import typing as t
from functools import cached_property

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_marketo_activities.errors import ConfigError, MalformedResponse, MarketoError, StateError
from tap_marketo_activities.incremental import PartitionSync, lateness_warning
from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.streams import (
    OWN_STREAM_TYPES,
    ActivitiesStream,
    ActivityTypesStream,
    DeletedLeadsStream,
    IncrementalStream,
    LeadChangesStream,
)
from tap_marketo_activities.transport import MarketoConnection, is_loopback_http, split_base_url

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

DEFAULT_LEAD_CHANGE_FIELDS = [
    "email",
    "firstName",
    "lastName",
    "company",
    "leadStatus",
    "leadScore",
]
SIMULATOR_CREDENTIAL = "simulator"


class TapMarketoActivities(Tap):
    """Marketo Engage lead activities, lead changes and deleted leads, incrementally."""

    name = "tap-marketo-activities"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id",
            th.StringType,
            title="Client ID",
            description="Client ID of a LaunchPoint custom service (Admin > LaunchPoint).",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            title="Client secret",
            description="Client secret of the same LaunchPoint service.",
        ),
        th.Property(
            "base_url",
            th.StringType,
            title="Base URL",
            description=(
                "Instance root https://<munchkin-id>.mktorest.com; the REST endpoint shown in "
                "Admin > Web Services (ending in /rest) is accepted too."
            ),
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description=(
                "ISO 8601 date-time with a zone; where a stream or partition with no bookmark "
                "starts. Rows stamped earlier are never emitted."
            ),
        ),
        th.Property(
            "activity_type_ids",
            th.ArrayType(th.IntegerType),
            title="Activity type ids",
            description=(
                "Activity types for the activities stream. Default: every type the instance "
                "lists, minus 13 and 37, which have their own streams."
            ),
        ),
        th.Property(
            "lead_change_fields",
            th.ArrayType(th.StringType),
            default=DEFAULT_LEAD_CHANGE_FIELDS,
            title="Lead change fields",
            description="Lead fields (REST API names) whose changes lead_changes reads.",
        ),
        th.Property(
            "lookback_minutes",
            th.IntegerType(minimum=1),
            default=60,
            title="Lookback (minutes)",
            description=(
                "How far before the bookmark each run starts, to pick up rows Marketo commits "
                "late. The tap warns when rows arrive within 20% of this."
            ),
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=300),
            default=300,
            title="Page size",
            description="Rows per call (Marketo's batchSize), 1 to 300.",
        ),
        th.Property(
            "simulator",
            th.BooleanType,
            default=False,
            title="Simulator",
            description=(
                "Run against the built-in Marketo simulator instead of Marketo; credentials "
                "and base_url are then not needed."
            ),
        ),
        th.Property(
            "max_calls_per_20s",
            th.IntegerType(minimum=1, maximum=100),
            default=50,
            title="Max calls per 20 s",
            description="Client-side rate limit; Marketo allows 100 per instance, shared.",
        ),
        th.Property(
            "max_concurrent_calls",
            th.IntegerType(minimum=1, maximum=10),
            default=5,
            title="Max concurrent calls",
            description="Client-side concurrency cap; Marketo allows 10 per instance.",
        ),
        th.Property(
            "max_daily_calls",
            th.IntegerType(minimum=1),
            title="Max daily calls",
            description=(
                "Optional budget on the instance's daily API usage (all integrations, as "
                "/stats/usage.json counts it); the tap stops cleanly before exceeding it."
            ),
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=8,
            title="Max retries",
            description="Retries of a transient failure (5xx, 604, 608, 611, 713, network).",
        ),
        th.Property(
            "request_timeout",
            th.IntegerType(minimum=1),
            default=120,
            title="Request timeout (s)",
            description="Seconds before a call is abandoned and retried.",
        ),
        th.Property(
            "retry_base_seconds",
            th.NumberType(minimum=0),
            default=1.0,
            title="Retry base (s)",
            description="First backoff wait; doubles per retry, up to 60 s.",
        ),
        th.Property(
            "rate_limit_window_seconds",
            th.NumberType(minimum=1),
            default=20,
            title="Rate window (s)",
            description="Length of Marketo's rate window (20 s). Change only for simulator tests.",
        ),
    ).to_dict()

    #: Taps built by this process's ``invoke`` whose run has not been summarised yet.
    _runs: t.ClassVar[list[TapMarketoActivities]] = []

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        # The SDK's msgspec writer (the ``singer-sdk[msgspec]`` extra) encodes each message
        # in C instead of through simplejson: a fifth less of the tap's CPU per
        # record (benchmarks/README.md). Output is the same Singer JSON, one line each.
        kwargs.setdefault("message_writer", MsgSpecWriter())
        super().__init__(*args, **kwargs)
        self._check_config()
        self._max_lateness = dt.timedelta()
        self._resources = contextlib.ExitStack()
        TapMarketoActivities._runs.append(self)

    # -- settings ------------------------------------------------------------------

    @property
    def simulated(self) -> bool:
        """True when the run talks to the built-in simulator."""
        return bool(self.config.get("simulator"))

    def _check_config(self) -> None:
        """Everything a first request would trip over, reported before it is made."""
        config = self.config
        errors: list[str] = []
        if not self.simulated:
            for name in ("client_id", "client_secret", "base_url"):
                if not config.get(name):
                    errors.append(
                        f"{name} is required (set it, or set simulator: true to try the tap "
                        "without a Marketo instance)."
                    )
            if config.get("base_url"):
                base_url = str(config["base_url"])
                try:
                    split_base_url(base_url)
                except ConfigError as exc:
                    errors.append(str(exc))
                else:
                    if base_url.startswith("http:") and not is_loopback_http(base_url):
                        errors.append(
                            "base_url must use https: (plain http is accepted only for a "
                            "simulator on 127.0.0.1)."
                        )
            if not config.get("start_date"):
                errors.append(
                    "start_date is required: an ISO 8601 date-time with a zone, e.g. "
                    "2024-01-01T00:00:00Z."
                )
        if config.get("start_date"):
            try:
                parse_datetime(str(config["start_date"]))
            except ValueError:
                errors.append(
                    f"start_date {config['start_date']!r} needs a time zone, e.g. "
                    "2024-01-01T00:00:00Z or 2024-01-01T00:00:00+01:00."
                )
        if "lead_change_fields" in config and not config["lead_change_fields"]:
            errors.append("lead_change_fields needs at least one lead field (REST API name).")
        if errors:
            raise ConfigValidationError(errors[0], errors=errors)

    @property
    def start_date(self) -> dt.datetime:
        """Configured start; in simulator mode, today 00:00 UTC by default."""
        value = self.config.get("start_date")
        if value:
            return parse_datetime(str(value))
        today = dt.datetime.now(dt.timezone.utc).date()
        return dt.datetime.combine(today, dt.time(), dt.timezone.utc)

    # -- the connection ----------------------------------------------------------

    @cached_property
    def api(self) -> MarketoConnection:
        """The run's one connection to Marketo (or to the built-in simulator)."""
        config = dict(self.config)
        if self.simulated:
            from tap_marketo_activities.simulator import MarketoSimulator, World  # noqa: PLC0415

            simulator = self._resources.enter_context(MarketoSimulator(World.quickstart()))
            config.update(
                base_url=simulator.base_url,
                client_id=SIMULATOR_CREDENTIAL,
                client_secret=SIMULATOR_CREDENTIAL,
            )
            self.logger.info("Running against the built-in simulator at %s", simulator.base_url)
        return MarketoConnection(config, self.logger, read_usage=self._read_usage)

    @property
    def types_stream(self) -> ActivityTypesStream:
        """The stream whose calls the run makes outside any page walk (types, usage)."""
        return t.cast("ActivityTypesStream", self.streams["activity_types"])

    def _read_usage(self) -> int:
        """What every integration spent today (for max_daily_calls): one call at start."""
        rows = self.types_stream.fetch_result("/v1/stats/usage.json")
        try:
            used = sum(int(row.get("total", 0)) for row in rows[:1])
        except (AttributeError, TypeError, ValueError):
            msg = "Marketo answered stats/usage.json without a numeric 'total'; stopping."
            raise MalformedResponse(msg) from None
        self.logger.info(
            "Instance API usage today: %s of max_daily_calls=%s",
            used,
            self.config.get("max_daily_calls"),
        )
        return used

    @cached_property
    def _activity_types(self) -> list[dict[str, t.Any]]:
        return self.types_stream.fetch()

    def activity_types(self) -> list[dict[str, t.Any]]:
        """types.json, fetched once per run."""
        return self._activity_types

    @cached_property
    def _type_names(self) -> dict[int, str]:
        return {int(row["id"]): str(row.get("name")) for row in self.activity_types()}

    def activity_type_names(self) -> dict[int, str]:
        """Type id -> name, for activityTypeName."""
        return self._type_names

    def selected_activity_type_ids(self) -> list[int]:
        """Configured ids (checked against the instance) or all listed minus 13 and 37."""
        listed = sorted(self.activity_type_names())
        configured = self.config.get("activity_type_ids")
        if not configured:
            return [i for i in listed if i not in OWN_STREAM_TYPES]
        unknown = sorted(set(configured) - set(listed))
        if unknown:
            msg = (
                f"activity_type_ids lists {', '.join(map(str, unknown))}, which this instance "
                "does not list in /activities/types.json; remove them or check the ids "
                "(the activity_types stream shows every id and name)."
            )
            raise ConfigError(msg)
        return sorted(set(configured))

    def note_lateness(self, lateness: dt.timedelta) -> None:
        """Keep the run's largest lateness for the metric and the warning."""
        self._max_lateness = max(self._max_lateness, lateness)

    # -- streams and state ---------------------------------------------------------

    @override
    def discover_streams(self) -> list[Stream]:
        """The four streams."""
        return [
            ActivityTypesStream(self),
            ActivitiesStream(self),
            LeadChangesStream(self),
            DeletedLeadsStream(self),
        ]

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Accept Singer state (or Meltano's export of it); refuse anything we cannot read."""
        if isinstance(state, dict) and isinstance(state.get("singer_state"), dict):
            state = state["singer_state"]
        if not isinstance(state, dict) or not isinstance(state.get("bookmarks", {}), dict):
            msg = (
                'The state is not a Singer state object ({"bookmarks": {...}}); pass the last '
                "STATE message this tap emitted, or no state to start from start_date."
            )
            raise StateError(msg)
        for name, stream_state in state.get("bookmarks", {}).items():
            if not isinstance(stream_state, dict):
                msg = f"State for stream '{name}' must be an object, not {stream_state!r}."
                raise StateError(msg)
            if name in {"activities", "lead_changes", "deleted_leads"}:
                _check_stream_state(name, stream_state)
        super().load_state(state)

    # -- running ---------------------------------------------------------------------

    @classmethod
    @override
    def invoke(
        cls,
        *,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
        **options: t.Any,
    ) -> None:
        """The SDK's entry point, with our one-line errors instead of tracebacks.

        A failure we understand (quota, configuration, state, malformed answer, spent
        retries) is printed as the one line a person can act on, and the process exits
        non-zero after the state of everything delivered. The state and catalog files
        are read here first so that a file that is not JSON is named, not traced.
        """
        try:
            super().invoke(
                state=_checked_json(state, "--state"),
                catalog=_checked_json(catalog, "--catalog"),
                **options,
            )
        except MarketoError as exc:
            cls.logger.error("%s", exc)  # the message is the whole report
            sys.exit(1)
        finally:
            # The SDK builds the tap inside its entry point (and its sync_all is final),
            # so the run's summary is written here, for a failed run too.
            while cls._runs:
                cls._runs.pop().finish_run()

    def finish_run(self) -> None:
        """Log the lateness metric/warning and the one-line summary; stop the simulator."""
        if "api" in self.__dict__:
            lookback = dt.timedelta(minutes=int(self.config["lookback_minutes"]))
            self.logger.info(
                'METRIC: {"type": "gauge", "metric": "max_lateness_seconds", "value": %d}',
                int(self._max_lateness.total_seconds()),
            )
            warning = lateness_warning(self._max_lateness, lookback)
            if warning:
                self.logger.warning(warning)
            self.logger.info("%s", self.api.stats.summary())
        self._resources.close()


def _check_stream_state(name: str, stream_state: dict[str, t.Any]) -> None:
    """Parse every partition's bookmark, overlap set and cursor now, before any call."""
    partitions = stream_state.get("partitions") or []
    if not isinstance(partitions, list) or not all(
        isinstance(p, dict) and isinstance(p.get("context"), dict) for p in partitions
    ):
        msg = (
            f"State for stream '{name}': field 'partitions' must be a list of objects, each "
            "with a 'context' object. Pass the state this tap last emitted."
        )
        raise StateError(msg)
    contexts = [json.dumps(p["context"], sort_keys=True) for p in partitions]
    if len(set(contexts)) != len(contexts):
        msg = (
            f"State for stream '{name}': field 'partitions' lists the same context twice. "
            "Keep one entry per context (the one with the latest replication_key_value)."
        )
        raise StateError(msg)
    entries = [("", stream_state)] + [(f" partition {p['context']}", p) for p in partitions]
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    for suffix, entry in entries:
        if not isinstance(entry, dict):
            msg = f"State for stream '{name}'{suffix} must be an object."
            raise StateError(msg)
        PartitionSync(
            dict(entry),
            label=f"stream '{name}'{suffix}",
            start_date=epoch,
            lookback=dt.timedelta(),
            run_started=lambda: epoch,
        )


def _read_json(handle: t.IO[str], option: str) -> t.Any:
    """Parse a --state/--catalog file, naming the option when it is not JSON."""
    text = handle.read()
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError as exc:
        msg = f"The {option} file is not valid JSON ({exc}); pass a file this tap wrote."
        raise StateError(msg) from None


def _checked_json(handle: t.IO[str] | None, option: str) -> t.IO[str] | None:
    """The file's JSON, checked, as a fresh handle for the SDK to read (None stays None)."""
    if handle is None:
        return None
    return io.StringIO(json.dumps(_read_json(handle, option)))


__all__ = ["IncrementalStream", "TapMarketoActivities"]

if __name__ == "__main__":
    TapMarketoActivities.cli()
