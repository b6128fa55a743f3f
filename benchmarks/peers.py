"""Other Marketo extractors on the same data as this tap: Stitch's and Airbyte's.

    python benchmarks/peers.py                    # the seed afternoon, 60,000 rows
    python benchmarks/peers.py --rows 20000       # smaller
    python benchmarks/run_all.py --only peers     # the same, from the one command

Each peer is installed once into a venv of its own under ``.bench-cache/peers/<name>`` of
this checkout (git-ignored; delete it to reinstall) and run as its own process against the
simulator serving ``World.seed_afternoon`` moved to yesterday (both peers size their export
windows by the real clock, up to now). This tap and the reference client run in the same
run, against the same world. Every process runs under peak.py; its CPU comes from
``os.wait4``, its output goes to a file that is read afterwards for the keys it delivered
(``marketoGUID``: all of them keep it), which are compared with the world's rows of the
activity types that client was asked for. Calls are the simulator's counters; each client
gets a simulator of its own. How each peer is installed and configured, and why, is in
benchmarks/README.md ("Peers on the same data").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peak import MARKER
from reference_client import LEAD_FIELDS as REFERENCE_LEAD_FIELDS

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator import catalog as cat

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".bench-cache" / "peers"
PEAK = HERE / "peak.py"
REFERENCE = HERE / "reference_client.py"
#: What each peer's venv gets, by ``pip install``.
REQUIREMENTS = {
    "stitch": "tap-marketo==2.9.4",
    "airbyte": "airbyte-source-marketo==2.1.3",
}
#: Stitch's tap builds ``https://<munchkin id>.mktorest.com/...`` from this id in its
#: ``endpoint`` setting; the benchmark's TLS tunnel answers for that name.
MUNCHKIN = "123-ABC-456"
HOST = f"{MUNCHKIN}.mktorest.com"
#: Stitch's tap has no way to export type 37 (the simulator, like the tap, refuses it in
#: bulk); Airbyte's connector waits 60 s after every job, so it gets one type by default.
STITCH_SKIPS = frozenset({cat.DELETE_LEAD})
AIRBYTE_TYPES = (cat.SEND_EMAIL,)
UNLIMITED = {"rate_limit_calls": 10**9, "daily_quota": 10**9, "scan_block": 10**6}
#: Set by the benchmark alone: the machine's proxies and CA bundles are not the benchmark's.
OWN_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class Unavailable(Exception):
    """A peer that cannot run here; the message is the one-line reason."""


# --------------------------------------------------------------------------- installing


def install(names: Iterable[str]) -> dict[str, Path | str]:
    """Each peer's venv (created once, reused), or the one-line reason it has none.

    The installs run side by side (together about a minute on 2 cores, downloads included).
    """
    jobs: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    out: dict[str, Path | str] = {}
    for name in names:
        venv = CACHE / name
        marker = venv / "installed.txt"
        if marker.is_file() and marker.read_text() == REQUIREMENTS[name]:
            out[name] = venv
            continue
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        log = CACHE / f"{name}-install.log"
        script = (
            f"{sys.executable} -m venv {venv} && {venv}/bin/pip install -q "
            f"--disable-pip-version-check {REQUIREMENTS[name]}"
        )
        with log.open("wb") as sink:
            process = subprocess.Popen(["sh", "-c", script], stdout=sink, stderr=sink)
        jobs[name] = (process, venv, log)
    for name, (process, venv, log) in jobs.items():
        if process.wait() != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            out[name] = f"pip install {REQUIREMENTS[name]} failed: {tail[0][:200]} (see {log})"
            continue
        (venv / "installed.txt").write_text(REQUIREMENTS[name])
        out[name] = venv
    return out


# --------------------------------------------------------------------------- TLS for Stitch


@dataclass(frozen=True)
class TlsFiles:
    """The benchmark's CA and the ``*.mktorest.com`` certificate and key it signed."""

    ca: Path
    cert: Path
    key: Path


def tls_files() -> TlsFiles:
    """A private CA and a certificate for ``*.mktorest.com`` signed by it (made once)."""
    folder = CACHE / "tls"
    files = TlsFiles(folder / "ca.pem", folder / "host.pem", folder / "host.key")
    if all(p.is_file() for p in (files.ca, files.cert, files.key)):
        return files
    if shutil.which("openssl") is None:
        raise Unavailable("needs the openssl command to make a certificate for *.mktorest.com")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "host.ext").write_text(
        f"subjectAltName=DNS:{HOST},DNS:*.mktorest.com\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    steps = [
        "openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.pem "
        "-subj '/CN=tap-marketo-activities benchmark CA' "
        "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign'",
        f"openssl req -newkey rsa:2048 -nodes -keyout host.key -out host.csr -subj '/CN={HOST}'",
        "openssl x509 -req -in host.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 "
        "-out host.pem -extfile host.ext",
    ]
    for step in steps:
        done = subprocess.run(["sh", "-c", step], cwd=folder, capture_output=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"openssl failed: {done.stderr.decode(errors='replace')[:200]}")
    return files


class TlsTunnel:
    """An HTTP ``CONNECT`` proxy on 127.0.0.1 that ends TLS itself and relays to the simulator.

    Stitch's tap only speaks ``https://<id>.mktorest.com``; with ``HTTPS_PROXY`` pointing
    here, ``requests`` asks this proxy for a tunnel, and the proxy answers the TLS handshake
    with a certificate for that name (signed by the benchmark's CA) and forwards the plain
    HTTP to the simulator. The peer pays for TLS as it would against Marketo.
    """

    def __init__(self, upstream: tuple[str, int], files: TlsFiles) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(files.cert, files.key)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._listener is not None
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> TlsTunnel:
        self._listener = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._sockets.append(client)
                self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            if not head.startswith(b"CONNECT "):
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            secure = self.context.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [secure, upstream]
            _relay(secure, upstream)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()


def _relay(secure: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy bytes both ways until either side closes (HTTP: one side talks at a time)."""
    while True:
        ready = [secure] if secure.pending() else select.select([secure, plain], [], [], 120)[0]
        if not ready:
            return
        for source in ready:
            data = source.recv(1 << 16)
            if not data:
                return
            (plain if source is secure else secure).sendall(data)


# --------------------------------------------------------------------------- running


@dataclass
class Result:
    """One client's run: what it cost, what it delivered, what the simulator saw."""

    client: str
    asked: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    records: int = 0
    keys: set[str] = field(default_factory=set)
    expected: set[str] = field(default_factory=set)
    rest_calls: int = 0
    bulk_calls: int = 0
    identity_calls: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    skipped: str = ""
    #: The row of this tap whose CPU per record this one is compared with.
    baseline: str = ""

    def per_record_us(self) -> float:
        return self.cpu_s / max(1, self.records) * 1e6


@dataclass
class Process:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: Path
    stderr_tail: str


def run_process(
    command: list[str], folder: Path, env: dict[str, str] | None = None, name: str = "run"
) -> Process:
    """Run ``command`` with its stdout in a file; its own CPU (wait4) and peak RSS (peak.py)."""
    stdout = folder / f"{name}.out"
    with stdout.open("wb") as out, (folder / f"{name}.err").open("w+b") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=folder)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode(errors="replace")
    peak_kb = next(
        (int(line[len(MARKER) :]) for line in text.splitlines() if line.startswith(MARKER)),
        usage.ru_maxrss,
    )
    return Process(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak_kb / 1024,
        returncode=os.waitstatus_to_exitcode(status),
        stdout=stdout,
        stderr_tail=text[-1500:],
    )


def delivered(path: Path, *, raw: bool = False) -> tuple[int, set[str]]:
    """(activity rows written, their marketoGUIDs) from Singer, Airbyte or raw JSON lines."""
    count, keys = 0, set()
    with path.open("rb") as lines:
        for line in lines:
            if not raw and b'"RECORD"' not in line[:40]:
                continue
            message = json.loads(line)
            if raw:
                row = message
            elif "record" in message and isinstance(message["record"], dict):
                row = message["record"].get("data", message["record"])  # Airbyte, Singer
            else:
                continue
            guid = row.get("marketoGUID")
            if guid is not None:
                count += 1
                keys.add(guid)
    return count, keys


def expected_keys(
    world: World, now: datetime, types: Iterable[int], lead_fields: Iterable[str] | None = None
) -> set[str]:
    """GUIDs of the world's rows of ``types`` committed by ``now`` (the start date is before
    every row of the seed afternoon); with ``lead_fields``, Change Data Value rows only for
    those fields, as leadchanges.json serves them to a client that names them."""
    wanted = frozenset(types)
    filtered = lead_fields is not None and cat.CHANGE_DATA_VALUE in wanted
    skip = frozenset({cat.CHANGE_DATA_VALUE}) if filtered else frozenset()
    end = world.visible_end(now)
    keys = {world.guid(i) for i in range(end) if world.type_id[i] in wanted - skip}
    if filtered:
        served = world.expected("lead_changes", now, fields=lead_fields)
        keys |= {
            row["marketoGUID"] for row in served if row["activityTypeId"] == cat.CHANGE_DATA_VALUE
        }
    return keys


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the variables only the benchmark may set."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in OWN_VARIABLES}
    env.update(extra)
    return env


def finish(result: Result, process: Process, sim: MarketoSimulator, *, raw: bool = False) -> None:
    """Fill ``result`` from the finished process, its output and the simulator's counters."""
    if process.returncode != 0:
        result.skipped = f"exited {process.returncode}: {_last_line(process.stderr_tail)}"
    result.wall_s, result.cpu_s = process.wall_s, process.cpu_s
    result.peak_rss_mb = process.peak_rss_mb
    result.records, result.keys = delivered(process.stdout, raw=raw)
    counters = sim.counters
    result.rest_calls = counters.rest_calls
    result.bulk_calls = sum(n for p, n in counters.calls_by_path.items() if p.startswith("/bulk/"))
    result.identity_calls = counters.identity_calls
    for path, n in counters.calls_by_path.items():
        kind = path.rsplit("/", 1)[-1].removesuffix(".json")
        if path.startswith("/bulk/v1/leads/"):
            kind = "leads " + kind
        result.calls[kind] = result.calls.get(kind, 0) + n


@dataclass(frozen=True)
class Afternoon:
    """The seed afternoon on ``day``, read from 08:00 at 20:00 (every row committed)."""

    world: World
    day: date

    @property
    def start(self) -> str:
        return f"{self.day.isoformat()}T08:00:00Z"

    @property
    def now(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, 20, tzinfo=UTC)


def run_tap(
    afternoon: Afternoon,
    folder: Path,
    label: str,
    streams: Iterable[str] = (),
    tls: TlsFiles | None = None,
    **settings: object,
) -> Result:
    """This tap, every stream (or only ``streams``), every lead field; with ``tls``, over
    https through the tunnel Stitch's tap uses, to show what TLS costs."""
    types = settings.get("activity_type_ids")
    asked = "every type, every stream"
    if isinstance(types, list):
        asked = ", ".join(cat.TYPES_BY_ID[t].name for t in types) + f" ({len(types)} type)"
    result = Result(label, asked, baseline="tap (REST)")
    fields = sorted(cat.LEAD_FIELD_NAMES)
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(MarketoSimulator(afternoon.world, now=afternoon.now, **UNLIMITED))
        env, code = clean_env(), TAP_CODE
        if tls is not None:
            tunnel = stack.enter_context(TlsTunnel(("127.0.0.1", sim.port), tls))
            # This tap reads REQUESTS_CA_BUNDLE for every call (transport.MarketoSession).
            env = clean_env(HTTPS_PROXY=tunnel.url, REQUESTS_CA_BUNDLE=str(tls.ca))
        config = {
            "base_url": f"https://{HOST}" if tls is not None else sim.base_url,
            "client_id": "simulator",
            "client_secret": "simulator",
            "start_date": afternoon.start,
            "max_calls_per_20s": 100,
            "rate_limit_window_seconds": 1,
            "lead_change_fields": fields,
            **settings,
        }
        name = f"tap-{abs(hash(label))}"
        (folder / f"{name}.json").write_text(json.dumps(config))
        command = [sys.executable, str(PEAK), "-c", code, "--config", f"{name}.json"]
        if streams:
            found = run_process([*command, "--discover"], folder, env, f"{name}-discover")
            catalog = json.loads(found.stdout.read_text())
            for stream in catalog["streams"]:
                for entry in stream["metadata"]:
                    if entry["breadcrumb"] == []:
                        entry["metadata"]["selected"] = stream["tap_stream_id"] in streams
            (folder / f"{name}-catalog.json").write_text(json.dumps(catalog))
            command += ["--catalog", f"{name}-catalog.json"]
            sim.reset_counters()
        finish(result, run_process(command, folder, env, name), sim)
    wanted = types if isinstance(types, list) else cat.TYPES_BY_ID
    result.expected = expected_keys(afternoon.world, afternoon.now, wanted, fields)
    return result


TAP_CODE = "from tap_marketo_activities.tap import TapMarketoActivities as T\nT.cli()"


def trust(files: TlsFiles) -> str:
    """Python lines that make ``requests`` trust the benchmark's CA in this process.

    REQUESTS_CA_BUNDLE (set too) reaches only ``Session.request`` (Stitch's tap fetches its
    token that way); its data calls go through ``Session.send``, which uses requests'
    default bundle, so that is pointed at the CA before anything connects. Nothing else
    of the client changes.
    """
    return (
        f"import requests.adapters\nrequests.adapters.DEFAULT_CA_BUNDLE_PATH = {str(files.ca)!r}\n"
    )


def run_reference(afternoon: Afternoon, folder: Path) -> Result:
    result = Result(
        "reference client (REST, raw rows)", "every type, every stream", baseline="tap (REST)"
    )
    with MarketoSimulator(afternoon.world, now=afternoon.now, **UNLIMITED) as sim:
        command = [
            sys.executable,
            str(PEAK),
            str(REFERENCE),
            "--base-url",
            sim.base_url,
            "--since",
            afternoon.start,
        ]
        finish(result, run_process(command, folder, clean_env(), "reference"), sim, raw=True)
    fields = REFERENCE_LEAD_FIELDS.split(",")
    result.expected = expected_keys(afternoon.world, afternoon.now, cat.TYPES_BY_ID, fields)
    return result


def run_stitch(afternoon: Afternoon, folder: Path, venv: Path) -> Result:
    """Stitch's tap: discover, select every activity stream but Delete Lead, sync."""
    result = Result(
        "Stitch tap-marketo 2.9.4 (bulk CSV)", "every type but 37", baseline="tap (REST)"
    )
    files = tls_files()
    config = {
        "endpoint": f"https://{HOST}/rest",
        "client_id": "simulator",
        "client_secret": "simulator",
        "start_date": afternoon.start,
        "poll_interval": 1,
    }
    (folder / "stitch-config.json").write_text(json.dumps(config))
    code = trust(files) + "from tap_marketo import main\nmain()"
    python = str(venv / "bin" / "python")
    with (
        MarketoSimulator(afternoon.world, now=afternoon.now, **UNLIMITED) as sim,
        TlsTunnel(("127.0.0.1", sim.port), files) as tunnel,
    ):
        env = clean_env(HTTPS_PROXY=tunnel.url, REQUESTS_CA_BUNDLE=str(files.ca))
        base = [python, str(PEAK), "-c", code, "--config", "stitch-config.json"]
        found = run_process([*base, "--discover"], folder, env, "stitch-discover")
        if found.returncode != 0:
            raise Unavailable(f"discovery failed: {_last_line(found.stderr_tail)}")
        catalog = json.loads(found.stdout.read_text())
        types = select_stitch_streams(catalog)
        (folder / "stitch-catalog.json").write_text(json.dumps(catalog))
        sim.reset_counters()
        # Its --catalog hands it an object it cannot read; --properties is what it reads.
        command = [*base, "--properties", "stitch-catalog.json"]
        finish(result, run_process(command, folder, env, "stitch"), sim)
    result.expected = expected_keys(afternoon.world, afternoon.now, types)
    return result


def select_stitch_streams(catalog: dict[str, Any]) -> set[int]:
    """Select every activity stream but those in STITCH_SKIPS, with all their fields."""
    types: set[int] = set()
    for stream in catalog["streams"]:
        root = next(m for m in stream["metadata"] if m["breadcrumb"] == [])
        type_id = root["metadata"].get("marketo.activity-id")
        if not stream["tap_stream_id"].startswith("activities_") or type_id in STITCH_SKIPS:
            continue
        types.add(int(type_id))
        for entry in stream["metadata"]:
            entry["metadata"]["selected"] = True
    return types


def run_airbyte(afternoon: Afternoon, folder: Path, venv: Path, type_ids: Iterable[int]) -> Result:
    """Airbyte's connector: discover, configure the activity streams of ``type_ids``, read."""
    wanted = sorted(type_ids)
    names = ", ".join(cat.TYPES_BY_ID[t].name for t in wanted)
    result = Result(
        "Airbyte source-marketo 2.1.3 (bulk CSV)",
        f"{names} ({len(wanted)} type)",
        baseline="tap (REST), same types as Airbyte",
    )
    program = str(venv / "bin" / "source-marketo")
    python = str(venv / "bin" / "python")
    with MarketoSimulator(afternoon.world, now=afternoon.now, **UNLIMITED) as sim:
        config = {
            "domain_url": sim.base_url,
            "client_id": "simulator",
            "client_secret": "simulator",
            "start_date": afternoon.start,
        }
        (folder / "airbyte-config.json").write_text(json.dumps(config))
        env = clean_env()
        found = run_process(
            [python, str(PEAK), program, "discover", "--config", "airbyte-config.json"],
            folder,
            env,
            "airbyte-discover",
        )
        if found.returncode != 0:
            raise Unavailable(f"discovery failed: {_last_line(found.stderr_tail)}")
        streams = {
            s["name"]: s
            for line in found.stdout.read_text().splitlines()
            if line.startswith("{") and '"CATALOG"' in line[:40]
            for s in json.loads(line)["catalog"]["streams"]
        }
        configured = []
        for type_id in wanted:
            name = "activities_" + cat.TYPES_BY_ID[type_id].name.lower().replace(" ", "_")
            if name not in streams:
                raise Unavailable(f"discovery listed no stream {name}")
            configured.append(
                {
                    "stream": streams[name],
                    "sync_mode": "incremental",
                    "destination_sync_mode": "append",
                    "cursor_field": ["activityDate"],
                }
            )
        (folder / "airbyte-catalog.json").write_text(json.dumps({"streams": configured}))
        sim.reset_counters()
        command = [
            python,
            str(PEAK),
            program,
            "read",
            "--config",
            "airbyte-config.json",
            "--catalog",
            "airbyte-catalog.json",
        ]
        finish(result, run_process(command, folder, env, "airbyte"), sim)
    result.expected = expected_keys(afternoon.world, afternoon.now, wanted)
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and MARKER not in line]
    return lines[-1][:200] if lines else "no output"


# --------------------------------------------------------------------------- the table


def table(results: list[Result]) -> list[str]:
    headers = [
        "client",
        "activity types asked",
        "records",
        "CPU s",
        "CPU us/record",
        "vs this tap (1)",
        "wall s",
        "REST calls",
        "bulk calls",
        "identity calls",
        "peak RSS MB",
        "every row (marketoGUID)",
    ]
    us = {r.client: r.per_record_us() for r in results if r.records and not r.skipped}
    lines = ["| " + " | ".join(headers) + " |", "|---|---|" + "---:|" * (len(headers) - 2)]
    for r in results:
        if r.skipped and not r.records:
            lines.append(f"| {r.client} | {r.asked} | skipped: {r.skipped} |" + " |" * 9)
            continue
        missing, extra = len(r.expected - r.keys), len(r.keys - r.expected)
        duplicates = r.records - len(r.keys)
        verdict = "yes" if not missing and not extra else f"no: {missing:,} missing"
        if extra:
            verdict += f", {extra:,} not asked for"
        verdict += f" ({len(r.keys):,} of {len(r.expected):,}"
        verdict += f", {duplicates:,} twice)" if duplicates else ")"
        if r.skipped:
            verdict += f"; {r.skipped}"
        ratio = f"{r.per_record_us() / us[r.baseline]:.2f}x" if r.baseline in us else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    r.client,
                    r.asked,
                    f"{r.records:,}",
                    f"{r.cpu_s:.2f}",
                    f"{r.per_record_us():.1f}",
                    ratio,
                    f"{r.wall_s:.1f}",
                    f"{r.rest_calls:,}",
                    f"{r.bulk_calls:,}",
                    f"{r.identity_calls:,}",
                    f"{r.peak_rss_mb:.0f}",
                    verdict,
                ]
            )
            + " |"
        )
    return lines


def peers(rows: int = 60_000, airbyte_types: Iterable[int] = AIRBYTE_TYPES) -> None:
    """Install (once) and run both peers, this tap and the reference client; print the table.

    The clients that do work run one after another. The two peers run side by side at the
    end: Stitch's run is paced by its own limit (100 calls per 20 s) and Airbyte's is a
    fixed 60 s wait per job, so together they take the time of one.
    """
    started = time.perf_counter()
    print(f"## Peers (seed afternoon, {rows:,} rows)\n")
    venvs = install(REQUIREMENTS)
    installed = time.perf_counter() - started
    day = datetime.now(UTC).date() - timedelta(days=1)
    afternoon = Afternoon(World.seed_afternoon(rows=rows, seed=1, day=day), day)
    types = sorted(airbyte_types)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        folder = Path(tmp)
        one_by_one: dict[str, Callable[[], Result]] = {
            "reference client": lambda: run_reference(afternoon, folder),
            "tap (REST)": lambda: run_tap(afternoon, folder, "tap (REST)"),
            "tap (bulk backfill)": lambda: run_tap(
                afternoon,
                folder,
                "tap (bulk backfill)",
                backfill_method="bulk",
                bulk_poll_seconds=1,
            ),
            "tap (REST), over TLS like Stitch": lambda: run_tap(
                afternoon, folder, "tap (REST), over TLS like Stitch", tls=tls_files()
            ),
            "tap (REST), same types as Airbyte": lambda: run_tap(
                afternoon,
                folder,
                "tap (REST), same types as Airbyte",
                streams={"activities"},
                activity_type_ids=types,
            ),
        }
        side_by_side: dict[str, Callable[[], Result]] = {
            "Stitch tap-marketo 2.9.4": lambda: _peer_stitch(afternoon, folder, venvs),
            "Airbyte source-marketo 2.1.3": lambda: _peer_airbyte(afternoon, folder, venvs, types),
        }
        results = [_attempt(label, run) for label, run in one_by_one.items()]
        with ThreadPoolExecutor(max_workers=len(side_by_side)) as pool:
            running = [pool.submit(_attempt, label, run) for label, run in side_by_side.items()]
            results += [future.result() for future in running]
    print("\n".join(table(results)))
    print(
        "\n(1) CPU per record over this tap's: over `tap (REST), same types as Airbyte` for "
        "Airbyte's row, over `tap (REST)` for the others.\n\nCalls by endpoint:\n"
    )
    for r in results:
        if r.calls:
            calls = ", ".join(f"{n:,} {kind}" for kind, n in sorted(r.calls.items()))
            print(f"- {r.client}: {calls}")
    print(
        f"\nThe afternoon of {day.isoformat()} (yesterday), read at 20:00 UTC by the "
        f"simulator's clock; installs {installed:.0f} s; peers total "
        f"{time.perf_counter() - started:.0f} s\n"
    )


def _attempt(label: str, run: Callable[[], Result]) -> Result:
    """``run()``, or a row saying in one line why that client cannot run here."""
    try:
        return run()
    except Unavailable as why:
        print(f"{label} cannot run against the simulator: {why}", file=sys.stderr)
        return Result(label, "", skipped=str(why))


def _peer_stitch(afternoon: Afternoon, folder: Path, venvs: dict[str, Path | str]) -> Result:
    venv = venvs["stitch"]
    if isinstance(venv, str):
        raise Unavailable(venv)
    return run_stitch(afternoon, folder, venv)


def _peer_airbyte(
    afternoon: Afternoon, folder: Path, venvs: dict[str, Path | str], types: Iterable[int]
) -> Result:
    venv = venvs["airbyte"]
    if isinstance(venv, str):
        raise Unavailable(venv)
    return run_airbyte(afternoon, folder, venv, types)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument(
        "--airbyte-types",
        type=lambda text: [int(t) for t in text.split(",")],
        default=list(AIRBYTE_TYPES),
        help="activity type ids for Airbyte's connector (each costs a 60 s wait)",
    )
    args = parser.parse_args()
    print(
        f"# Peers: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    peers(args.rows, args.airbyte_types)


if __name__ == "__main__":
    main()
