"""What a pass over a partition remembers and decides: pure logic, no HTTP.

Windows and the bookmark, the overlap set, cursors and recovery times (``incremental``),
the state documents a run accepts (``state``), the bulk-to-REST hand-over (``handover``).
Imports ``sources`` (for the shapes of bulk state) and below, never the streams.
"""
