"""Backfills through Marketo's Bulk Activity Extract API.

A first sync of years of activities through REST pages costs one call per 300 rows; a bulk
export job returns up to 31 days of rows in one file for a handful of calls (create, enqueue,
a few status polls, the download). This package plans the windows, runs the jobs, downloads
and verifies their files and turns each CSV row into exactly the record the REST path emits.
It talks HTTP only through ``BulkTransport`` (transport.py), so the tap's own transport
(limiter, budget, auth, retries) or a plain one (tests, benchmarks) can carry it.

Modules: ``windows`` (planning), ``transport`` (the interface and a plain implementation),
``jobs`` (create/enqueue/status/cancel and their errors), ``download`` (Range resume and
SHA-256), ``csvfile`` (streaming parse into REST-shaped rows), ``backfill`` (the per-window
loop and its state), ``job_steps`` (one window's job from creation to a downloaded file),
``cache`` (one file per window shared by the type groups), ``signals``, ``errors``.
Elsewhere, above this layer: ``sync/handover.py`` (bulk first, REST after, through
``PartitionSync``), ``streams/bulk_transport.py`` (``BulkTransport`` over the tap's own
connection) and ``streams/bulk_pass.py`` (the step ``activities`` calls).
"""

from tap_marketo_activities.sources.bulk.backfill import BulkBackfill
from tap_marketo_activities.sources.bulk.job_steps import BackfillSettings, BulkStats
from tap_marketo_activities.sources.bulk.signals import Terminated, terminate_as_exception
from tap_marketo_activities.sources.bulk.transport import BulkTransport, PlainBulkTransport
from tap_marketo_activities.sources.bulk.windows import Window, backfill_end, plan_windows

__all__ = [
    "BackfillSettings",
    "BulkBackfill",
    "BulkStats",
    "BulkTransport",
    "PlainBulkTransport",
    "Terminated",
    "Window",
    "backfill_end",
    "plan_windows",
    "terminate_as_exception",
]
