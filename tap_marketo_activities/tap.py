"""tap-marketo-activities: settings, streams, and how a run starts and ends."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import io
import json
import os
import signal
import sys
import threading
import typing as t
from functools import cached_property

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_marketo_activities.bulk.cache import ExportCache
from tap_marketo_activities.errors import (
    ConfigError,
    MalformedResponse,
    MarketoError,
    StateError,
)
from tap_marketo_activities.incremental import lateness_warning
from tap_marketo_activities.leads.streams import LeadsStream, MergedLeadsStream
from tap_marketo_activities.logs import log_gauge, quiet_metrics, quiet_sdk_notices
from tap_marketo_activities.prefetch import Prefetcher
from tap_marketo_activities.settings import (
    env_settings,
    parse_json_text,
    read_config,
    read_config_file,
    read_option_file,
    schema_errors,
    start_date_value,
    unknown_settings,
)
from tap_marketo_activities.state import check_state, read_json_option
from tap_marketo_activities.streams import (
    COMMON_FIELDS,
    OWN_STREAM_TYPES,
    ActivitiesStream,
    ActivityTypesStream,
    DeletedLeadsStream,
    IncrementalStream,
    LeadChangesStream,
    TypedActivitiesStream,
    write_state_at_stop,
)
from tap_marketo_activities.transport import MarketoConnection, check_base_url
from tap_marketo_activities.typed import EXTRA_ATTRIBUTES, stream_names, type_layout
from tap_marketo_activities.writer import BatchingWriter

if t.TYPE_CHECKING:
    import click
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
# Marketo commits rows minutes (rarely hours) late; a week of lookback is far past any
# lateness seen, and far below where window arithmetic could overflow.
MAX_LOOKBACK_MINUTES = 7 * 24 * 60


class TapMarketoActivities(Tap):
    """Marketo Engage lead activities, lead changes and deleted leads, incrementally."""

    name = "tap-marketo-activities"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id",
            th.StringType,
            title="Client ID",
            description=(
                "Required unless simulator is true. Client ID of a LaunchPoint custom service "
                "(Admin > LaunchPoint)."
            ),
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            title="Client secret",
            description=(
                "Required unless simulator is true. Client secret of the same LaunchPoint service."
            ),
        ),
        th.Property(
            "base_url",
            th.StringType,
            title="Base URL",
            description=(
                "Required unless simulator is true. Instance root "
                "https://<munchkin-id>.mktorest.com; the REST endpoint shown in Admin > Web "
                "Services (ending in /rest) is accepted too. Only https (plain http only to "
                "a simulator on this machine)."
            ),
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description=(
                "Required unless simulator is true (then: today 00:00 UTC); not needed for "
                "--discover. ISO 8601 date-time with a zone, or a date alone (2024-01-01 "
                "means 2024-01-01T00:00:00Z); where a stream or partition with no bookmark "
                "starts. Rows stamped earlier are never emitted."
            ),
        ),
        th.Property(
            "activity_type_ids",
            th.ArrayType(th.IntegerType),
            title="Activity type ids",
            description=(
                "Activity types for the activities stream. Default: every type the instance "
                "lists, minus 12 and 13 (New Lead, Change Data Value: in lead_changes) and 37 "
                "(Delete Lead: in deleted_leads). List 12 to have New Lead in both streams."
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
            "leads_stream",
            th.BooleanType,
            default=False,
            title="Leads stream",
            description=(
                "Add the leads and merged_leads streams: leads the activities say changed, "
                "read by id (one describe2 call per run, one call per 300 changed leads)."
            ),
        ),
        th.Property(
            "lead_fields",
            th.ArrayType(th.StringType),
            title="Lead fields",
            description="Lead fields (REST API names) the leads stream reads; default: all.",
        ),
        th.Property(
            "leads_reconcile_days",
            th.IntegerType(minimum=0, maximum=3650),
            default=7,
            title="Leads reconciliation (days)",
            description=(
                "With leads_stream: when the last full read of the leads began this many days "
                "ago or more, a run first re-exports every lead by bulk createdAt windows "
                "(catching changes no activity shows) within leads_reconcile_quota_percent "
                "of the day's bulk quota, continuing in later runs; 0 turns it off."
            ),
        ),
        th.Property(
            "leads_reconcile_quota_percent",
            th.NumberType(exclusive_minimum=0, maximum=100),
            default=20,
            title="Leads reconciliation quota share (%)",
            description=(
                "The share of bulk_daily_quota_mb the leads reconciliation may export per "
                "Marketo quota day (reset at midnight US Central)."
            ),
        ),
        th.Property(
            "bulk_daily_quota_mb",
            th.NumberType(exclusive_minimum=0),
            default=500,
            title="Bulk daily quota (MB)",
            description=(
                "The instance's daily bulk export quota, shared by every integration (500 MB "
                "by default; Adobe: 500 MB or more). Sizes the leads reconciliation's budget."
            ),
        ),
        th.Property(
            "lookback_minutes",
            th.IntegerType(minimum=1, maximum=MAX_LOOKBACK_MINUTES),
            default=60,
            title="Lookback (minutes)",
            description=(
                "How far before the bookmark each run starts, to pick up rows Marketo commits "
                "late, 1 to 10080 (a week). The tap warns when rows arrive within 20% of this."
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
            "simulator_history_days",
            th.IntegerType(minimum=0, maximum=365),
            default=0,
            title="Simulator history (days)",
            description=(
                "With simulator true: the simulated instance's activity starts this many "
                "days before today (4,000 rows a day) and start_date defaults to then, so "
                "a first sync backfills them (bulk past bulk_threshold_days)."
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
            th.IntegerType(minimum=1, maximum=100_000_000),
            title="Max daily calls",
            description=(
                "Optional budget on the instance's daily API usage (all integrations, as "
                "/stats/usage.json counts it); the tap stops cleanly before exceeding it."
            ),
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0, maximum=50),
            default=8,
            title="Max retries",
            description=(
                "Retries of a transient failure (5xx, 604, 608, 611, 713, network, the "
                "identity endpoint), 0 to 50."
            ),
        ),
        th.Property(
            "request_timeout",
            th.IntegerType(minimum=1, maximum=3600),
            default=120,
            title="Request timeout (s)",
            description="Seconds before a call is abandoned and retried, 1 to 3600.",
        ),
        th.Property(
            "retry_base_seconds",
            th.NumberType(minimum=0, maximum=60),
            default=1.0,
            title="Retry base (s)",
            description="First backoff wait; doubles per retry, up to 60 s.",
        ),
        th.Property(
            "rate_limit_window_seconds",
            th.NumberType(minimum=1, maximum=3600),
            default=20,
            title="Rate window (s)",
            description="Length of Marketo's rate window (20 s). Change only for simulator tests.",
        ),
        th.Property(
            "backfill_method",
            th.StringType(allowed_values=["auto", "bulk", "rest"]),
            default="auto",
            title="Backfill method",
            description=(
                "How activities reads a long window (a first sync, or a partition far behind): "
                "bulk uses Bulk Extract jobs (a few calls per 31 days, 500 MB a day of export "
                "quota), rest uses REST pages (one call per 300 rows); auto uses bulk when the "
                "window is longer than bulk_threshold_days. lead_changes and deleted_leads "
                "always use REST."
            ),
        ),
        th.Property(
            "bulk_threshold_days",
            th.NumberType(minimum=0),
            default=3,
            title="Bulk threshold (days)",
            description="With backfill_method auto, windows longer than this use bulk.",
        ),
        th.Property(
            "bulk_poll_seconds",
            th.NumberType(exclusive_minimum=0),
            default=30,
            title="Bulk poll interval (s)",
            description=(
                "First wait between status polls of a bulk job; it grows by half each poll, "
                "up to 5 minutes (Marketo updates job status at most once a minute)."
            ),
        ),
        th.Property(
            "metrics_log_level",
            th.StringType(allowed_values=["DEBUG", "INFO"]),
            default="DEBUG",
            title="Metrics log level",
            description=(
                "Level of the SDK's METRIC lines (record counts, request durations, the "
                "largest lateness): DEBUG keeps them out of a normal log (LOGLEVEL=DEBUG "
                "shows them), INFO writes them on every run, for a log collector that reads "
                "them."
            ),
        ),
    ).to_dict()

    #: Taps built by this process's ``invoke`` whose run has not been summarised yet.
    _runs: t.ClassVar[list[TapMarketoActivities]] = []

    def __init__(
        self,
        *,
        config: t.Any = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        **kwargs: t.Any,
    ) -> None:
        # Settings are read and checked here (settings.py), not by the SDK: its messages
        # print values (secrets included) and a bad environment value ends in a traceback.
        # All of it happens before the SDK's own set-up, which discovers the streams (a
        # types.json call, and the simulator started in simulator mode): bad settings and
        # a bad state are refused before any call.
        self._max_lateness = dt.timedelta()
        self._resources = contextlib.ExitStack()
        if isinstance(kwargs.get("state"), dict):
            check_state(kwargs["state"])
        settings = read_config(config)
        if parse_env_config:
            settings.update(env_settings(self.config_jsonschema))
        if validate_config:  # the SDK's --discover builds the tap without validation
            schema = dict(self.config_jsonschema)
            self.append_builtin_config(schema)
            errors = unknown_settings(schema, settings) or schema_errors(schema, settings)
            if errors:
                raise ConfigValidationError(errors[0], errors=errors)
            check_settings(settings)
        # The SDK's msgspec encoding (the ``singer-sdk[msgspec]`` extra), records written in
        # batches of whole lines (writer.py): the same Singer JSON, one line each.
        kwargs.setdefault("message_writer", BatchingWriter())
        super().__init__(config=settings, parse_env_config=False, validate_config=False, **kwargs)
        quiet_metrics(self.metrics_logger, str(self.config.get("metrics_log_level", "DEBUG")))
        if threading.current_thread() is threading.main_thread():
            # The SDK's handler exits 0 on SIGTERM and on Ctrl-C (SIGINT), so a scheduler
            # or a shell records a stopped run as a success; ours replaces it for both and
            # exits 128 + the signal's number (143, 130).
            signal.signal(signal.SIGTERM, self._stop_on_signal)
            signal.signal(signal.SIGINT, self._stop_on_signal)
        TapMarketoActivities._runs.append(self)

    def _stop_on_signal(self, signum: int, frame: t.Any) -> t.NoReturn:
        """Stop now: every STATE already written is correct; the next run resumes there."""
        name = signal.Signals(signum).name
        if signum == signal.SIGINT:
            name += " (Ctrl-C)"
        write_state_at_stop(self.streams.values())  # what the target has (issue 22)
        self.logger.error(
            "Stopped by %s before the run finished; the state written so far is correct and "
            "the next run resumes from it. Exiting with %d.",
            name,
            128 + signum,
        )
        sys.exit(128 + signum)

    # -- settings ------------------------------------------------------------------

    @property
    def simulated(self) -> bool:
        """True when the run talks to the built-in simulator."""
        return bool(self.config.get("simulator"))

    @property
    def start_date(self) -> dt.datetime:
        """Configured start; in simulator mode, today 00:00 UTC by default."""
        value = self.config.get("start_date")
        if value:
            return start_date_value(str(value))
        today = dt.datetime.now(dt.timezone.utc).date()
        history = dt.timedelta(days=int(self.config.get("simulator_history_days") or 0))
        return dt.datetime.combine(today, dt.time(), dt.timezone.utc) - history

    # -- the connection ----------------------------------------------------------

    @cached_property
    def api(self) -> MarketoConnection:
        """The run's one connection to Marketo (or to the built-in simulator)."""
        config = dict(self.config)
        if self.simulated:
            from tap_marketo_activities.simulator import MarketoSimulator, World  # noqa: PLC0415

            simulator = self._resources.enter_context(
                MarketoSimulator(
                    World.quickstart(history_days=int(self.config["simulator_history_days"]))
                )
            )
            config.update(
                base_url=simulator.base_url,
                client_id=SIMULATOR_CREDENTIAL,
                client_secret=SIMULATOR_CREDENTIAL,
            )
            self.logger.info("Running against the built-in simulator at %s", simulator.base_url)
        return MarketoConnection(config, self.logger, read_usage=self._read_usage)

    @cached_property
    def bulk_exports(self) -> ExportCache:
        """Export files of this run, shared by the activities partitions; removed at its end."""
        return self._resources.enter_context(ExportCache())

    @cached_property
    def prefetcher(self) -> Prefetcher:
        """The run's page chains read ahead (prefetch.py); stopped when the run ends."""
        prefetcher = Prefetcher(self.api.limiter)
        self._resources.callback(prefetcher.close)
        return prefetcher

    def start_prefetch(self) -> None:
        """Start reading every chain of the sync ahead, once, when the first walk begins.

        Not with one call at a time (``max_concurrent_calls: 1``: nothing to overlap), and
        not in a ``--test`` run, which stops every stream after its first record.
        """
        if self.prefetcher.started:
            return
        streams = list(self.streams.values())
        plans = []
        if int(self.config["max_concurrent_calls"]) > 1 and not any(
            s.ABORT_AT_RECORD_COUNT is not None for s in streams
        ):
            for stream in streams:
                if not isinstance(stream, IncrementalStream):
                    continue
                if not stream.selected and not stream.has_selected_descendents:
                    continue
                try:
                    plans += stream.plan_chains()
                except MarketoError as exc:  # the pass itself reports it, in its turn
                    self.logger.debug("Not reading %s ahead: %s", stream.name, exc)
        self.prefetcher.start(plans)

    @cached_property
    def types_stream(self) -> ActivityTypesStream:
        """The stream whose calls the run makes outside any page walk (types, usage).

        Built before the others: discovery needs its types.json answer to list the
        per-type tables.
        """
        return ActivityTypesStream(self)

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
        """Configured ids (checked against the instance) or all listed minus 12, 13 and 37."""
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
        """The four core streams, and one typed table per activity type the instance lists.

        Listing the per-type tables takes the types.json call every run makes anyway
        (it is cached for the run); they are off unless selected.
        """
        # The SDK discovers while it is still being constructed; no call leaves before the
        # settings are known to be sound (a plain-HTTP base_url must never get the secret).
        check_settings(self.config, for_sync=False)
        streams: list[Stream] = [
            self.types_stream,
            ActivitiesStream(self),
            LeadChangesStream(self),
            DeletedLeadsStream(self),
        ]
        if self.config.get("leads_stream"):
            merged = MergedLeadsStream(self)
            streams += [LeadsStream(self, merged), merged]
        types = self.activity_types()
        names = stream_names(types)
        reserved = [*COMMON_FIELDS, EXTRA_ATTRIBUTES]
        streams += [
            TypedActivitiesStream(self, type_layout(item, names[int(item["id"])], reserved))
            for item in sorted(types, key=lambda item: int(item["id"]))
        ]
        return streams

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """Discovery asks Marketo for the activity types: its failures get one line too."""
        quiet_sdk_notices(cls.logger)  # (Meltano runs --discover before every run)
        try:
            super().cb_discover(ctx, param, value)
        except MarketoError as exc:
            cls.logger.error("%s", exc)
            ctx.exit(1)
        except ConfigValidationError as exc:
            for error in exc.errors or [str(exc)]:
                cls.logger.error("Config validation error: %s", error)
            ctx.exit(1)

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Accept Singer state (or Meltano's export of it); refuse anything we cannot read."""
        checked = check_state(state)
        # Which streams the state already knew: a per-type table absent from it is selected
        # for the first time and reads its history (ActivitiesStream.history_types).
        self.streams_in_state = frozenset(checked.get("bookmarks") or ())
        super().load_state(checked)

    # -- running ---------------------------------------------------------------------

    @classmethod
    @override
    def invoke(  # type: ignore[override]  # paths, not open files: get_singer_command
        cls,
        *,
        state: str | None = None,
        catalog: str | None = None,
        **options: t.Any,
    ) -> None:
        """The SDK's entry point, with our one-line errors instead of tracebacks.

        A failure we understand (quota, configuration, state, malformed answer, spent
        retries) is printed as the one line a person can act on, and the process exits
        non-zero after the state of everything delivered. The state and catalog files
        (paths, see ``get_singer_command``) are read here first so that a file that is
        missing, unreadable or not JSON is named in one line, not traced.
        """
        quiet_sdk_notices(cls.logger)
        # The SDK and its libraries are loaded: park their objects where the garbage
        # collector's full passes no longer walk them (gen-2 collections: 0.10 -> 0.03 s
        # of CPU on a 60,000-row run).
        gc.freeze()
        try:
            super().invoke(
                state=_checked_json(state, "--state"),
                catalog=_checked_json(catalog, "--catalog"),
                **options,
            )
        except ConfigValidationError as exc:  # a --state or --catalog file we cannot read
            cls.logger.error("%s", exc)
            sys.exit(1)
        except MarketoError as exc:
            cls.logger.error("%s", exc)  # the message is the whole report
            sys.exit(1)
        except BrokenPipeError:
            # Python would hit the closed pipe again flushing stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            cls.logger.error(
                "The target stopped reading the tap's output (broken pipe), so the run "
                "stopped; the target's own log says why. The next run resumes from the last "
                "state the target wrote."
            )
            sys.exit(1)
        finally:
            cls._finish_runs()

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command, with --state and --catalog taken as plain paths.

        The SDK declares them ``click.File()``: a missing file is refused by click with a
        three-line usage message and exit 2, before any of our code runs. As plain
        strings they reach ``invoke``, which reads them as --config files are read
        (``_checked_json``): one line naming the file and the problem, exit 1.
        """
        import click  # noqa: PLC0415 (the SDK imports it for its command line anyway)

        command = super().get_singer_command()
        for param in command.params:
            if param.name in {"state", "catalog"}:
                param.type = click.STRING
        return command

    @classmethod
    @override
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """``--config`` files are read here first: a missing or malformed one is one line.

        The SDK's own reading ends in a traceback (FileNotFoundError, JSONDecodeError).
        """
        try:
            for path in value:
                if path != "ENV":
                    read_config_file(path)
        except ConfigValidationError as exc:
            cls.logger.error("%s", exc)
            ctx.exit(1)
        return super().cb_config(ctx, param, value)

    @classmethod
    @override
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: a failed connection test is one line and a non-zero exit."""
        quiet_sdk_notices(cls.logger)
        try:
            if value == CliTestOptionValue.Disabled.value:
                return
            if value == CliTestOptionValue.Schema.value:
                super().cb_test(ctx, param, value)
                return
            # The SDK's test selects every stream (its run_connection_test and
            # run_sync_dry_run are final), so each per-type table nobody selected wrote a
            # SCHEMA and a RECORD: here only what a sync would read is tested.
            config = ctx.params.get("config")
            tap = cls(
                config=getattr(config, "config", None),
                parse_env_config=bool(getattr(config, "parse_env", False)),
                validate_config=True,
            )
            streams = [s for s in tap.streams.values() if s.selected or s.has_selected_descendents]
            tap.run_sync_dry_run(dry_run_record_limit=1, streams=streams)
            ctx.exit()
        except MarketoError as exc:
            cls.logger.error("Connection test failed: %s", exc)
            ctx.exit(1)
        finally:
            cls._finish_runs()

    @classmethod
    def _finish_runs(cls) -> None:
        """Summarise the runs the SDK's entry points built, failed ones included.

        The SDK constructs the tap inside ``invoke`` and ``cb_test`` (and its ``sync_all``
        is final), so the end of a run is only seen from around those entry points.
        """
        while cls._runs:
            cls._runs.pop().finish_run()

    def finish_run(self) -> None:
        """Log the lateness metric/warning and the one-line summary; stop the simulator."""
        if "api" in self.__dict__:
            lookback = dt.timedelta(minutes=int(self.config["lookback_minutes"]))
            log_gauge("max_lateness_seconds", int(self._max_lateness.total_seconds()))
            warning = lateness_warning(self._max_lateness, lookback)
            if warning:
                self.logger.warning(warning)
            self.logger.info("%s", self.api.stats.summary())
        self._resources.close()


#: What to do about a --state or --catalog file that is not JSON.
_FILE_ADVICE = {
    "--state": " Pass the state this tap last emitted, or {} to start from start_date.",
    "--catalog": " Pass a catalog this tap wrote with --discover.",
}


def _checked_json(path: str | None, option: str) -> t.IO[str] | None:
    """The file's JSON, checked, as a fresh handle for the SDK to read (None stays None).

    Every refusal is one line that starts with the option and the file's name: the
    file cannot be read (settings.read_option_file, as for --config), is not JSON (line
    and column), or holds JSON this tap cannot use (state.read_json_option).
    """
    if path is None:
        return None
    text = read_option_file(path, option)
    try:
        value = read_json_option(io.StringIO(text), option)
    except StateError as exc:
        if text.strip():  # not JSON: said as for --config, with the line and the column
            try:
                json.loads(text)
            except json.JSONDecodeError:
                parse_json_text(text, path, option, _FILE_ADVICE[option])
            except (ValueError, RecursionError):
                pass  # the state's own words ("nests deeper than ...")
        raise StateError(f"{path}: {exc}") from None
    return io.StringIO(json.dumps(value))


def check_settings(config: t.Mapping[str, t.Any], *, for_sync: bool = True) -> None:
    """Everything a first request would trip over, reported before it is made.

    Discovery (``for_sync=False``) calls Marketo for the activity types but reads no
    rows, so it needs the connection settings and not ``start_date``.
    """
    errors: list[str] = []
    if not config.get("simulator"):
        for name in ("client_id", "client_secret", "base_url"):
            if not config.get(name):
                errors.append(
                    f"{name} is required (set it, or set simulator: true to try the tap "
                    "without a Marketo instance)."
                )
        if config.get("base_url"):
            try:
                check_base_url(str(config["base_url"]))
            except ConfigError as exc:
                errors.append(str(exc))
        if for_sync and not config.get("start_date"):
            errors.append(
                "start_date is required: an ISO 8601 date-time with a zone, e.g. "
                "2024-01-01T00:00:00Z, or a date alone (midnight UTC)."
            )
    if config.get("start_date"):
        try:
            start_date_value(str(config["start_date"]))
        except ValueError as exc:
            errors.append(str(exc))
    if "lead_change_fields" in config and not config["lead_change_fields"]:
        errors.append("lead_change_fields needs at least one lead field (REST API name).")
    if errors:
        raise ConfigValidationError(errors[0], errors=errors)


__all__ = ["IncrementalStream", "TapMarketoActivities"]

if __name__ == "__main__":
    TapMarketoActivities.cli()
