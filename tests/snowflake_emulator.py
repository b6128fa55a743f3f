"""An emulated Snowflake on 127.0.0.1 for the target-snowflake tests (run in fakesnow's venv).

    .test-cache/fakesnow/bin/python tests/snowflake_emulator.py PORT

fakesnow's server mode answers the Snowflake connector's HTTP protocol from an in-memory
DuckDB. target-snowflake loads through a few statements fakesnow does not know: a PUT to the
user's stage (``@~``), a MERGE or COPY selecting from the staged files with QUALIFY over
SEQ8(), REMOVE of the staged files and DROP FILE FORMAT. This process rewrites exactly those,
here and nowhere else (the target runs unpatched, from its own venv):

* ``@~/path`` becomes a path in a named stage, ``FAKESNOW.HOME.USER_STAGE``, created on first
  use (fakesnow stores the uploaded files under its local bucket folder);
* ``from '@~/path' (file_format => f)`` becomes a table ``FAKESNOW.HOME.STAGED_<n>`` holding
  each staged JSON line as a VARIANT ``v`` with its line number ``n``; ``$1:`` becomes ``v:``
  and ``SEQ8()`` becomes ``n`` (so the last line of a key wins, as in Snowflake);
* a MERGE's source, that select, is made a table first (DuckDB cannot join to it);
* ``remove '@~/path'`` deletes those files and tables; ``drop file format`` does nothing.

One route is added for the tests: ``POST /test/query`` runs one SQL statement (the body) and
answers its rows as JSON. The process never reaches beyond 127.0.0.1. fakesnow keeps the
staged files in a folder under TMPDIR, made at import: the caller gives it a TMPDIR of its own
and removes it (uvicorn ends on SIGTERM by the signal itself, so no exit hook would run).
"""

from __future__ import annotations

import gzip
import importlib
import itertools
import json
import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fakesnow.transforms import stage
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from starlette.requests import Request

# The module, not the function of the same name the package exports.
server = importlib.import_module("fakesnow.server")
HOME = "FAKESNOW.HOME"
USER_STAGE = f"{HOME}.USER_STAGE"
_USER_PATH = re.compile(r"'@~/([^']*)'")
_FROM_STAGED = re.compile(
    r"from\s+'@~/([^']*)'\s*(\(\s*file_format\s*=>\s*[^)]*\))?", re.IGNORECASE
)
_MERGE_SOURCE = re.compile(r"\busing\s+\((select\s.*?=\s*1)\)\s+s\s+on\b", re.I | re.S)
_SEQ8 = re.compile(r"\bseq8\(\)", re.IGNORECASE)
_DOLLAR1 = re.compile(r"\$1:")
_lock = threading.Lock()
_counter = itertools.count(1)
_staged_tables: dict[str, list[str]] = {}  # staged path -> tables made from it


def _run(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    try:
        return list(cur.fetchall())
    except Exception:
        return []


def _ensure_user_stage(conn: Any) -> None:
    _run(conn, "create database if not exists FAKESNOW")
    _run(conn, f"create schema if not exists {HOME}")
    _run(conn, f"create stage if not exists {USER_STAGE}")


def _staged_files(path: str) -> list[Path]:
    root = Path(stage.internal_dir(USER_STAGE))
    prefix = path.strip("/")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix().startswith(prefix)
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _load_staged(conn: Any, path: str) -> str:
    """A table of the staged JSON lines under ``path``, in file and line order."""
    table = f"{HOME}.STAGED_{next(_counter)}"
    _run(conn, f"create or replace table {table} (v variant, n integer)")
    lines: list[str] = []
    for file in _staged_files(path):
        raw = file.read_bytes()
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        lines += [line for line in text.decode("utf-8").splitlines() if line.strip()]
    for start in range(0, len(lines), 500):
        values = ", ".join(
            f"({_sql_string(line)}, {start + i})"
            for i, line in enumerate(lines[start : start + 500])
        )
        _run(conn, f"insert into {table} select parse_json(column1), column2 from values {values}")
    _staged_tables.setdefault(path, []).append(table)
    return table


def _remove(conn: Any, path: str) -> None:
    for file in _staged_files(path):
        file.unlink()
    for table in _staged_tables.pop(path.rstrip("/"), []) + _staged_tables.pop(path, []):
        _run(conn, f"drop table if exists {table}")


def rewrite(conn: Any, sql: str) -> str:
    """The statement as fakesnow can run it (see the module docstring)."""
    text = sql.strip()
    lowered = text.lower()
    if lowered.startswith("put "):
        _ensure_user_stage(conn)
        return _USER_PATH.sub(lambda m: f"@{USER_STAGE}/{m.group(1)}", text)
    if lowered.startswith("remove "):
        match = _USER_PATH.search(text)
        if match:
            _remove(conn, match.group(1))
            return "select 'removed' as status"
    if lowered.startswith("drop file format"):
        return "select 'dropped' as status"
    if _FROM_STAGED.search(text):
        text = _FROM_STAGED.sub(lambda m: f"from {_load_staged(conn, m.group(1))}", text)
        text = _SEQ8.sub("n", _DOLLAR1.sub("v:", text))
        merge = _MERGE_SOURCE.search(text)
        if merge:
            # DuckDB cannot join a MERGE target to that subquery; a table of its rows it can.
            source = f"{HOME}.SOURCE_{next(_counter)}"
            _run(conn, f"create or replace table {source} as {merge.group(1)}")
            text = text[: merge.start(1) - 1] + source + text[merge.end(1) + 1 :]
            _staged_tables.setdefault(_last_path(sql), []).append(source)
        return text
    return sql


def _last_path(sql: str) -> str:
    match = _USER_PATH.search(sql)
    return match.group(1) if match else ""


_original_query_request = server.query_request


async def query_request(request: Request) -> Any:
    """fakesnow's query handler, with the statement rewritten first."""
    body = await request.body()
    gzipped = request.headers.get("Content-Encoding") == "gzip"
    data = json.loads(gzip.decompress(body) if gzipped else body)
    conn = server.sessions.get(request.headers.get("Authorization", "")[17:-1])
    sql = data.get("sqlText", "")
    if conn is not None:
        with _lock:
            new_sql = rewrite(conn, sql)
        if new_sql != sql:
            data["sqlText"] = new_sql
            raw = json.dumps(data).encode()
            request._body = gzip.compress(raw) if gzipped else raw
    return await _original_query_request(request)


async def test_query(request: Request) -> JSONResponse:
    """Rows of one statement, for the tests' assertions."""
    sql = (await request.body()).decode()
    conn = server.shared_fs.connect()
    try:
        cur = conn.cursor()
        cur.execute(sql)
        names = [d[0] for d in cur.description or []]
        rows = [list(row) for row in cur.fetchall()] if names else []
    except Exception as exc:
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
    return JSONResponse(json.loads(json.dumps({"columns": names, "rows": rows}, default=str)))


def main() -> None:
    port = int(sys.argv[1])
    routes = [
        Route(r.path, query_request, methods=["POST"])
        if isinstance(r, Route) and r.path == "/queries/v1/query-request"
        else r
        for r in server.routes
    ]
    app = Starlette(routes=[*routes, Route("/test/query", test_query, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
