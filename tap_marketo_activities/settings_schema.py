"""Every setting the tap takes: its name, type, default, bounds and the description users read.

The Tap declares it as its ``config_jsonschema`` (``--about``, Meltano's settings, discovery);
``settings.py`` reads and checks a configuration against it.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

DEFAULT_LEAD_CHANGE_FIELDS = [
    "email",
    "firstName",
    "lastName",
    "company",
    "leadStatus",
    "leadScore",
]
# Marketo commits rows minutes (rarely hours) late; a week of lookback is far past any
# lateness seen, and far below where window arithmetic could overflow.
MAX_LOOKBACK_MINUTES = 7 * 24 * 60

CONFIG_SCHEMA: dict[str, t.Any] = th.PropertiesList(
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
