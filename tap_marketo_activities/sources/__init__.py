"""Where rows come from: REST page chains read ahead (``prefetch``) and bulk export jobs.

Imports only ``wire`` and the shared modules; nothing here knows the SDK's streams.
"""
