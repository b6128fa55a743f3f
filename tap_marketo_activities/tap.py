"""tap-marketo-activities: settings, streams, and how a run starts and ends."""

from __future__ import annotations

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
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_marketo_activities.errors import (
    ConfigError,
    MalformedResponse,
    MarketoError,
    StateError,
)
from tap_marketo_activities.logs import log_gauge, quiet_metrics, quiet_sdk_notices
from tap_marketo_activities.run import ActivityTypes, RunContext
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
from tap_marketo_activities.settings_schema import CONFIG_SCHEMA
from tap_marketo_activities.streams.activities import ActivitiesStream, TypedActivitiesStream
from tap_marketo_activities.streams.activity_types import ActivityTypesStream
from tap_marketo_activities.streams.lead_activities import DeletedLeadsStream, LeadChangesStream
from tap_marketo_activities.streams.leads.streams import LeadsStream, MergedLeadsStream
from tap_marketo_activities.streams.schemas import COMMON_FIELDS
from tap_marketo_activities.streams.typed import EXTRA_ATTRIBUTES, stream_names, type_layout
from tap_marketo_activities.streams.walk import IncrementalStream, write_state_at_stop
from tap_marketo_activities.streams.writer import BatchingWriter
from tap_marketo_activities.sync.incremental import lateness_warning
from tap_marketo_activities.sync.state import check_state, read_json_option
from tap_marketo_activities.wire.transport import MarketoConnection, check_base_url

if t.TYPE_CHECKING:
    import click
    from singer_sdk.streams import Stream

SIMULATOR_CREDENTIAL = "simulator"


class TapMarketoActivities(Tap):
    """Marketo Engage lead activities, lead changes and deleted leads, incrementally."""

    name = "tap-marketo-activities"

    #: Every setting (settings_schema.py).
    config_jsonschema = CONFIG_SCHEMA

    #: Streams the input state had bookmarks for (load_state); None: no state given.
    _streams_in_state: frozenset[str] | None = None

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

    # -- the run context ---------------------------------------------------------

    @cached_property
    def run(self) -> RunContext:
        """What this run shares, built once and handed to every stream (run.py)."""
        return RunContext(
            settings=self.config,
            start_date=self.start_date,
            connect=self._connect,
            # Fetched at first use, through the types stream, which is built with this run.
            activity_types=ActivityTypes(
                lambda: self.types_stream.fetch(),  # noqa: PLW0108
                self.config.get("activity_type_ids"),
            ),
            state_writer=self.state_writer,
            message_writer=self.message_writer,
            logger=self.logger,
            walks=lambda: [s for s in self.streams.values() if isinstance(s, IncrementalStream)],
            streams_in_state=self._streams_in_state,
        )

    def _connect(self, run: RunContext) -> MarketoConnection:
        """The run's one connection to Marketo (or to the built-in simulator)."""
        config = dict(self.config)
        if self.simulated:
            from tap_marketo_activities.simulator import MarketoSimulator, World  # noqa: PLC0415

            simulator = run.resources.enter_context(
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
    def types_stream(self) -> ActivityTypesStream:
        """The stream whose calls the run makes outside any page walk (types, usage).

        Built before the others: discovery needs its types.json answer to list the
        per-type tables.
        """
        return ActivityTypesStream(self, self.run)

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
        run = self.run
        streams: list[Stream] = [
            self.types_stream,
            ActivitiesStream(self, run),
            LeadChangesStream(self, run),
            DeletedLeadsStream(self, run),
        ]
        if self.config.get("leads_stream"):
            merged = MergedLeadsStream(self, run)
            streams += [LeadsStream(self, run, merged), merged]
        types = run.activity_types.rows
        names = stream_names(types)
        reserved = [*COMMON_FIELDS, EXTRA_ATTRIBUTES]
        streams += [
            TypedActivitiesStream(self, run, type_layout(item, names[int(item["id"])], reserved))
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
        # Kept here until the run context is built (in discovery, after the settings are
        # checked: building it earlier would read a bad start_date before its one-line error).
        self._streams_in_state = frozenset(checked.get("bookmarks") or ())
        if "run" in self.__dict__:
            self.run.streams_in_state = self._streams_in_state
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
        if "run" not in self.__dict__:
            return
        run = self.run
        if run.connected:
            lookback = dt.timedelta(minutes=int(self.config["lookback_minutes"]))
            largest = run.lateness.largest
            log_gauge("max_lateness_seconds", int(largest.total_seconds()))
            warning = lateness_warning(largest, lookback)
            if warning:
                self.logger.warning(warning)
            self.logger.info("%s", run.connection.stats.summary())
        run.close()


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
