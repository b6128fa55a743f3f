"""Shared fixtures: a simulator on 127.0.0.1 and the tap run as a real process.

Only fixtures live here; the helpers tests import by name are in helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import (
    REPO,
    TAP,
    Meltano,
    Postgres,
    TapRun,
    free_port,
    in_ci,
    listening,
    parse_messages,
    project_files,
    read_env_file_text,
    tail,
    unavailable,
    write_json,
)

from tap_marketo_activities.simulator import MarketoSimulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tap_marketo_activities.simulator import World


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_of_the_session() -> Iterator[None]:
    """Every process the suite starts keeps its temporary files in one folder, removed at the end.

    A tap killed on purpose (the SIGKILL and SIGTERM tests) cannot remove its own bulk export
    files; without this they would stay in the machine's /tmp.
    """
    folder = tempfile.mkdtemp(prefix="tap-marketo-test-tmp-")
    # Traversable by other accounts: .ci/postgres.sh hands the server's account (postgres)
    # a password file it creates here.
    Path(folder).chmod(0o711)
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def run_tap(tmp_path):
    """Run the tap as a process: run_tap(config, state=None, catalog=None, args=())."""
    counter = iter(range(10_000))

    def run(
        config: dict[str, Any],
        state: dict[str, Any] | None = None,
        *,
        catalog: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> TapRun:
        n = next(counter)
        command = [*TAP, "--config", str(write_json(tmp_path, f"config{n}.json", config))]
        if state is not None:
            command += ["--state", str(write_json(tmp_path, f"state{n}.json", state))]
        if catalog is not None:
            command += ["--catalog", str(write_json(tmp_path, f"catalog{n}.json", catalog))]
        command += list(args)
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
        singer_output = not {"--about", "--discover"} & set(args)
        messages = parse_messages(done.stdout) if singer_output else []
        return TapRun(done.returncode, messages, done.stderr, done.stdout)

    return run


@pytest.fixture
def simulator():
    """simulator(world, **knobs) starts a MarketoSimulator, stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(world: World | None = None, **knobs: Any) -> MarketoSimulator:
            return stack.enter_context(MarketoSimulator(world, **knobs))

        yield start


# ------------------------------------------------------------------------------ Meltano
@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout to run Meltano in."""
    target = tmp_path_factory.mktemp("project")
    for name in project_files(REPO):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="session")
def meltano_executable() -> Path:
    given = os.environ.get("TAP_MARKETO_TEST_MELTANO")
    if given:
        if not Path(given).is_file():
            unavailable(f"TAP_MARKETO_TEST_MELTANO={given} is not a file")
        return Path(given)
    try:
        done = subprocess.run(
            ["bash", str(REPO / ".ci" / "install_meltano.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"could not install Meltano with .ci/install_meltano.sh: {exc}")
    if done.returncode != 0 or not done.stdout.strip():
        unavailable(
            "could not install Meltano with .ci/install_meltano.sh (no access to PyPI?):\n"
            + tail(done.stderr, 20)
        )
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def meltano(meltano_executable: Path, project: Path) -> Meltano:
    """Meltano with the tap and the two loaders installed in the project copy."""
    runner = Meltano(meltano_executable, project)
    runner("install", "tap-marketo", "target-jsonl", "target-postgres")
    return runner


@pytest.fixture
def state_db(tmp_path: Path) -> Path:
    """A system database (hence a state backend) of the test's own."""
    return tmp_path / "meltano.db"


# ------------------------------------------------------------------------------ PostgreSQL
def run_postgres_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / ".ci" / "postgres.sh"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the session, stopped and removed when the session ends.

    A server named by ``TAP_MARKETO_TEST_PG_*`` is used as it is and left running (it is not
    ours). Otherwise ``.ci/postgres.sh`` initialises a cluster in a new temporary folder on a
    free port (installing the server only under CI); the finalizer stops it, removes the
    folder and fails the session if anything still listens on that port. One xdist worker
    runs every test that needs it (the ``meltano`` group), so there is one cluster per run.
    """
    values = {k: v for k, v in os.environ.items() if k.startswith("TAP_MARKETO_TEST_PG_")}
    if "TAP_MARKETO_TEST_PG_PORT" in values:
        yield connect(values)
        return
    # A short path: the server's Unix socket must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="tap-marketo-pg-"))
    port = free_port()
    script_env = {"TAP_MARKETO_TEST_PG_DIR": str(folder), "TAP_MARKETO_TEST_PG_PORT": str(port)}
    try:
        # Under CI the script may install the server; on a developer's machine only start one.
        try:
            done = run_postgres_script(*(() if in_ci() else ("--no-install",)), env=script_env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"no PostgreSQL: .ci/postgres.sh failed ({exc})")
        if done.returncode != 0:
            unavailable(
                "no PostgreSQL server (install Debian's `postgresql` package, or run "
                "`bash .ci/postgres.sh --install-only` as root):\n" + tail(done.stderr, 20)
            )
        values = read_env_file_text(done.stdout)
        port = int(values["TAP_MARKETO_TEST_PG_PORT"])  # the script may have moved it
        yield connect(values)
    finally:
        stopped = run_postgres_script("--stop", env=script_env)
        shutil.rmtree(folder, ignore_errors=True)
        assert not listening(port), (
            f"the session's PostgreSQL still listens on 127.0.0.1:{port} after --stop:\n"
            + tail(stopped.stderr, 20)
        )
        assert not folder.exists(), f"could not remove the session's PostgreSQL folder {folder}"


def connect(values: dict[str, str]) -> Postgres:
    """A Postgres client for the TAP_MARKETO_TEST_PG_* values; fails unless it answers."""
    bindir = values.get("TAP_MARKETO_TEST_PG_BINDIR", "")
    psql = (
        str(Path(bindir) / "psql")
        if bindir and (Path(bindir) / "psql").exists()
        else shutil.which("psql")
    )
    if not psql:
        unavailable("no psql client to check what target-postgres wrote")
    pg = Postgres(
        host=values.get("TAP_MARKETO_TEST_PG_HOST", "127.0.0.1"),
        port=int(values["TAP_MARKETO_TEST_PG_PORT"]),
        user=values.get("TAP_MARKETO_TEST_PG_USER", "tap_marketo"),
        password=values.get("TAP_MARKETO_TEST_PG_PASSWORD", "tap_marketo"),
        database=values.get("TAP_MARKETO_TEST_PG_DATABASE", "tap_marketo_test"),
        psql=str(psql),
    )
    pg.query("SELECT 1")
    return pg
