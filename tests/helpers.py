"""Helpers the tests import: the tap's command, run results, expected keys, the README's blocks.

Fixtures live in conftest.py; everything a test module imports by name lives here, so no test
imports conftest (pytest loads conftest itself, and importing it a second time as a module is
fragile under pytest-xdist and other import modes).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tap_marketo_activities.simulator import MarketoSimulator

TAP = [sys.executable, "-m", "tap_marketo_activities"]
README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_command(name: str) -> str:
    """The README's code block marked ``<!-- quickstart:NAME -->``, as written."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- quickstart:{name} -->\n```bash\n(.*?)\n```", text, re.S)
    assert match, f"README lacks the quickstart:{name} command"
    return match.group(1).strip()


@dataclass
class TapRun:
    """What one tap process wrote: Singer messages on stdout, logs on stderr."""

    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    stdout: str = ""
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for message in self.messages:
            if message["type"] == "RECORD":
                self.records[message["stream"]].append(message["record"])
            elif message["type"] == "SCHEMA":
                self.schemas[message["stream"]] = message["schema"]
            elif message["type"] == "STATE":
                self.states.append(message["value"])

    @property
    def state(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None

    def guids(self, stream: str) -> list[str]:
        return [r["marketoGUID"] for r in self.records.get(stream, [])]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "| ERROR" in line]


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def write_json(directory: Path, name: str, value: Any) -> Path:
    path = directory / name
    path.write_text(json.dumps(value))
    return path


def sim_config(sim: MarketoSimulator, **overrides: Any) -> dict[str, Any]:
    """A tap config pointing at a running simulator."""
    config: dict[str, Any] = {
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "start_date": "2024-04-12T12:00:00Z",
        "retry_base_seconds": 0.05,
    }
    config.update(overrides)
    return config


# The tap's default lead_change_fields: what lead_changes asks Marketo for.
LEAD_FIELDS = ["email", "firstName", "lastName", "company", "leadStatus", "leadScore"]


def expected_guids(sim: MarketoSimulator, stream: str, since: str, **kwargs: Any) -> list[str]:
    """Sorted keys a perfect extractor delivers by the simulator's now (default settings)."""
    if stream == "lead_changes":
        kwargs.setdefault("fields", LEAD_FIELDS)
    return sorted(r["marketoGUID"] for r in sim.expected(stream, since=since, **kwargs))


def guid_counts(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["marketoGUID"] for r in rows)
