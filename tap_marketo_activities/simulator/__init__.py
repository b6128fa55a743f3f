"""A Marketo REST API simulator: the ground truth for the tap's tests, the engine of the quick
start and the load generator for benchmarks. Standard library only.

This is NOT a Marketo "sandbox" (Adobe sells a product of that name: a real Marketo instance).
It is a local imitation of the handful of endpoints this tap uses, faithful to Adobe's
documentation and OpenAPI definition (AdobeDocs/marketo-apis, static/swagger-mapi.json).
The pages are under https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/:
``authentication``, ``paging-tokens``, ``lead-database/activities`` and ``error-codes``.
It models the quirks that break naive clients:

- identity: ``GET|POST /identity/oauth/token`` (parameters in the query; a form body is also
  accepted on POST, UNVERIFIED for Marketo); 401 ``invalid_client`` for bad credentials, 400
  ``unsupported_grant_type`` for another grant; the same token with its remaining life until it
  expires (real time);
- ``/rest/v1/activities/types.json``, ``pagingtoken.json``, ``activities.json``,
  ``leadchanges.json``, ``deletedleads.json`` and ``/rest/v1/stats/usage.json``;
- late commits: rows become visible at their commit time, and a date-based token walks rows
  stamped at or after ``since`` in COMMIT order, so a late row appears behind later-stamped
  ones (world.py); each page's ``nextPageToken`` is a position; the last one (``moreResult``
  false) picks up rows committed later;
- block scanning: each call scans at most ``scan_block`` committed rows, so pages can be short
  or empty while ``moreResult`` is true;
- rows with and without ``id``, both ``Z`` and ``+0000`` dates, numeric attribute values,
  omitted empty attributes;
- HTTP 414 for request lines over 8 KB, ``POST ...?_method=GET`` with a form body, tokens long
  enough to need it (``long_tokens``);
- 606/615/607 limits, token expiry (601/602), seeded random and scripted faults, counters
  (``sim.counters`` is a frozen ``Counters`` dataclass snapshot; keys in counters.py);
- a virtual clock, also sent in every ``Date`` header;
- the bulk activity export endpoints (``/bulk/v1/activities/export/...``: create, enqueue,
  status, file with ``Range``/206, cancel, list) with the queue limits, processing time on the
  virtual clock, SHA-256 checksums, the 500 MB daily export quota and download faults
  (``sim.bulk``; see bulk.py);
- for other extractors' discovery (benchmarks/peers.py): ``/rest/v1/leads/describe.json`` (the
  lead fields the simulator knows; there are no lead records) and a refusal on
  ``/bulk/v1/leads/export/create.json`` (1035 for an ``updatedAt`` filter, else 1003).

UNVERIFIED behaviour and the choices made:
- a missing access token answers 601 "Access token not specified" (Marketo may use 600);
- missing required parameters answer 1002, non-integers 1001, over-limit list sizes and
  ``batchSize`` 1003, unknown lead fields 1006, a bad ``sinceDatetime`` 1001 (configurable:
  ``bad_since_code``), an invalid or stale paging token 1003 "Invalid nextPageToken"
  (configurable: ``invalid_token_code``, ``stale_token_code``); see endpoints.py;
- paging tokens never expire on their own; ``reject_cursors()`` makes earlier position tokens
  stale; date tokens from pagingtoken.json stay valid;
- a POST to a REST path without ``_method=GET`` answers 605; an unknown REST path 610;
- ``leadchanges.json`` returns type 12 rows with ``"fields": []``;
- static lists (``listId``) are derived: a lead is in one list id in five; the 10,000-lead
  ``listId`` rule (1003 from 2026) is not modelled;
- the daily quota resets at midnight CST (UTC-6) by the virtual clock; identity calls and
  refused calls (601/602/606/607/615, injected faults) do not count toward it or the rate.

Modules, each importing only those before it: ``catalog``, ``clock``, ``counters``,
``faults``, ``identity``, ``limits``, ``tokens`` (leaves); ``render``, ``generate`` and
``world`` (the rows);
``protocols`` (what routes read from a running instance); the routes ``endpoints``,
``leads`` and ``bulk``; ``server`` (the HTTP handler); ``instance`` (``MarketoSimulator``,
which owns everything and starts the server).
"""

from .clock import VirtualClock
from .counters import Counters
from .faults import Faults
from .generate import Campaign
from .instance import MarketoSimulator
from .world import RowInfo, World

__all__ = ["Campaign", "Counters", "Faults", "MarketoSimulator", "RowInfo", "VirtualClock", "World"]
