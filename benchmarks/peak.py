"""Run a Python script or ``-c`` code and report its own peak RSS on stderr when it exits.

``ru_maxrss`` from ``wait4`` is not enough: Linux carries the peak of the process image
before ``exec`` into it, and a child forked from the benchmark (which holds a 1,000,000-row
world) starts out as large as the benchmark. ``VmHWM`` in ``/proc/self/status`` belongs to
the program that is running now.

    python benchmarks/peak.py SCRIPT [ARGS...]
    python benchmarks/peak.py -c CODE [ARGS...]
"""

from __future__ import annotations

import atexit
import runpy
import sys

MARKER = "PEAK_RSS_KB="


def report() -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                print(f"{MARKER}{line.split()[1]}", file=sys.stderr, flush=True)


def main() -> None:
    atexit.register(report)
    if sys.argv[1] == "-c":
        code = sys.argv[2]
        sys.argv = ["-c", *sys.argv[3:]]
        exec(compile(code, "<benchmark>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
