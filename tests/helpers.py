"""Helpers the tests import: the tap's command, run results, expected keys, the README's blocks.

Fixtures live in conftest.py; everything a test module imports by name lives here, so no test
imports conftest (pytest loads conftest itself, and importing it a second time as a module is
fragile under pytest-xdist and other import modes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tap_marketo_activities.run import OWN_STREAM_TYPES
from tap_marketo_activities.simulator.catalog import DEFAULT_ACTIVITY_TYPE_IDS
from tap_marketo_activities.sync.incremental import STATE_EVERY_ROWS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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


def kill_after_records(
    command: list[str], records_before_kill: int, timeout: float = 120
) -> tuple[list[dict[str, Any]], int]:
    """Start a tap command, SIGKILL it after N RECORD lines; return what it wrote, and its code."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines, records = [], 0
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if '"type":"RECORD"' in line.replace(" ", ""):
                records += 1
                if records >= records_before_kill:
                    os.kill(process.pid, signal.SIGKILL)
                    break
    finally:
        process.wait(timeout=timeout)
        if process.stdout is not None:
            process.stdout.close()
    return parse_messages("".join(lines)), process.returncode


def killed_runs(
    config_path: Path,
    folder: Path,
    name: str,
    records_before_kill: Callable[[], int],
    *,
    attempts: int = 3,
    check: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int]:
    """Run the tap up to ``attempts`` times, each SIGKILLed after some records and resumed
    from the last STATE it wrote, until one ends by itself.

    Returns every message written, the last state, and how many runs were killed.
    """
    messages: list[dict[str, Any]] = []
    state = None
    kills = 0
    for attempt in range(attempts):
        command = [*TAP, "--config", str(config_path)]
        if state is not None:
            command += ["--state", str(write_json(folder, f"{name}-{attempt}.json", state))]
        written, code = kill_after_records(command, records_before_kill())
        if check is not None:
            check(written)
        messages += written
        states = [m["value"] for m in written if m["type"] == "STATE"]
        state = states[-1] if states else state
        if code == 0:
            break
        kills += 1
    return messages, state, kills


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
# The tap's default activity types: every type the instance lists but those another stream
# carries (12 and 13 in lead_changes, 37 in deleted_leads).
DEFAULT_ACTIVITY_TYPES = sorted(set(DEFAULT_ACTIVITY_TYPE_IDS) - OWN_STREAM_TYPES)


def expected_guids(sim: MarketoSimulator, stream: str, since: str, **kwargs: Any) -> list[str]:
    """Sorted keys a perfect extractor delivers by the simulator's now (default settings)."""
    if stream == "lead_changes":
        kwargs.setdefault("fields", LEAD_FIELDS)
    if stream == "activities":
        kwargs.setdefault("type_ids", DEFAULT_ACTIVITY_TYPES)
    return sorted(r["marketoGUID"] for r in sim.expected(stream, since=since, **kwargs))


def guid_counts(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["marketoGUID"] for r in rows)


def read_jsonl(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Records per stream from target-jsonl's files (one file per stream, no timestamps)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            out[path.stem] = [json.loads(line) for line in handle if line.strip()]
    return out


# ------------------------------------------------------------------------------ Meltano, PostgreSQL
REPO = README.parent
# Where the tests install what they need beyond the project's .venv (gitignored; delete it to
# undo): Meltano's venv (by .ci/install_meltano.sh), and uv's and pip's download caches for the
# plugins Meltano installs, so nothing lands in the home folder.
TEST_CACHE = REPO / ".test-cache"
MELTANO_TIMEOUT = 600


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; under CI a missing prerequisite is a failure."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


# ------------------------------------------------------------------------------ the project
def project_files(root: Path) -> list[str]:
    """What a fresh clone would hold: tracked and untracked-but-not-ignored files."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".meltano", "output", "__pycache__", ".pytest_cache"}
        return [
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(root).parts)
        ]
    return [name for name in listed.decode().split("\0") if name]


def clean_environment() -> dict[str, str]:
    """This process's environment minus anything that would steer Meltano or the plugins."""
    steering = ("MELTANO_", "TAP_MARKETO_", "TARGET_JSONL_", "TARGET_POSTGRES_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(steering) and not k.startswith("TAP_MARKETO_TEST_"))
        and k not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        NO_COLOR="1",
        # Meltano installs plugins with uv, which compiles no bytecode unless asked; where
        # PYTHONDONTWRITEBYTECODE is set, every plugin start would recompile its imports.
        UV_COMPILE_BYTECODE="1",
        # Plugin installs cache their downloads in the checkout, not the home folder, and so
        # do Meltano's run logs (XDG state) and its hub cache (XDG cache).
        UV_CACHE_DIR=str(TEST_CACHE / "uv"),
        PIP_CACHE_DIR=str(TEST_CACHE / "pip"),
        XDG_STATE_HOME=str(TEST_CACHE / "xdg-state"),
        XDG_CACHE_HOME=str(TEST_CACHE / "xdg-cache"),
    )
    return env


@dataclass
class Meltano:
    """The meltano executable, bound to the project copy."""

    executable: Path
    project: Path

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        database: Path | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        full_env = clean_environment()
        if database is not None:
            full_env["MELTANO_DATABASE_URI"] = f"sqlite:///{database}"
        full_env.update(env or {})
        done = subprocess.run(
            [str(self.executable), *args],
            cwd=cwd or self.project,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=MELTANO_TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"meltano {' '.join(args)} exited {done.returncode}\n"
                f"--- stderr (tail) ---\n{tail(done.stderr)}\n--- stdout (tail) ---\n"
                f"{tail(done.stdout)}"
            )
        return done


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str
    psql: str

    def query(self, sql: str) -> str:
        done = subprocess.run(
            [
                self.psql,
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                self.database,
                "-c",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"psql failed on {sql!r}: {done.stderr}")
        return done.stdout.strip()

    def json(self, sql: str) -> Any:
        return json.loads(self.query(f"SELECT coalesce(json_agg(q), '[]') FROM ({sql}) q"))

    def target_env(self, schema: str) -> dict[str, str]:
        return {
            "TARGET_POSTGRES_HOST": self.host,
            "TARGET_POSTGRES_PORT": str(self.port),
            "TARGET_POSTGRES_USER": self.user,
            "TARGET_POSTGRES_PASSWORD": self.password,
            "TARGET_POSTGRES_DATABASE": self.database,
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
        }


def read_env_file_text(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(?:export\s+)?(TAP_MARKETO_TEST_PG_\w+)=(.*)", line.strip())
        if match:
            values[match[1]] = match[2].strip("'\"")
    return values


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == 0


def sigterm_after_records(
    config_path: Path, records: int, timeout: float = 60, signum: int = signal.SIGTERM
) -> tuple[int, list[dict[str, Any]], str]:
    """Run the tap, send SIGTERM (or signum) after N RECORD lines; exit code, messages, stderr."""
    process = subprocess.Popen(
        [*TAP, "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, seen = [], 0
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            seen += '"type":"RECORD"' in line.replace(" ", "")
            if seen >= records:
                process.send_signal(signum)
                break
        lines += process.stdout.readlines()
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        process.wait(timeout=timeout)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return process.returncode, parse_messages("".join(lines)), stderr


def assert_kills_lost_nothing(
    sim: MarketoSimulator,
    messages: list[dict[str, Any]],
    final_state: dict[str, Any],
    *,
    since: str,
    page_size: int,
    kills: int,
    label: str,
) -> None:
    """After runs killed and resumed: every expected row arrived, at most 10,000 re-sent a kill.

    The bound is 10,000 rows per partition per kill (activities has a partition per type
    group): the tap writes a STATE at least that often (issue 22). ``page_size`` is kept
    for callers; the bound no longer depends on it.
    """
    del page_size
    partitions = len(final_state["bookmarks"]["activities"]["partitions"])
    for stream in ("activities", "lead_changes", "deleted_leads"):
        rows = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]
        counts = guid_counts(rows)
        want = set(expected_guids(sim, stream, since))
        assert want <= set(counts), f"{label}: {stream} lost {len(want - set(counts))} rows"
        resent = sum(n - 1 for n in counts.values())
        bound = STATE_EVERY_ROWS * (partitions if stream == "activities" else 1) * kills
        assert resent <= bound, f"{label}: {stream} re-sent {resent} rows (bound {bound})"
