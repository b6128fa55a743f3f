#!/usr/bin/env bash
# Install fakesnow's server (an emulated Snowflake) into a virtual environment of its own, for
# the target-snowflake tests (tests/test_snowflake.py runs tests/snowflake_emulator.py in it).
#
#   bash .ci/install_fakesnow.sh     prints the path of that venv's `python` on stdout
#
# Everything goes under the checkout's .test-cache/ (gitignored; delete it to undo): the venv in
# .test-cache/fakesnow, uv's download cache in .test-cache/uv. Idempotent: a venv holding the
# wanted versions is reused (a stamp file records them). Safe to call from several pytest-xdist
# workers at once (a lock file serialises them). target-snowflake itself is not installed here:
# Meltano installs it from meltano.yml, as a user's `meltano install` does.
#
# fakesnow 0.12.1 speaks the protocol of snowflake-connector-python 4.8 (5.x breaks it), the
# version meltano.yml pins for target-snowflake too.
#
# Knobs (environment): TAP_MARKETO_FAKESNOW_VENV (default <checkout>/.test-cache/fakesnow),
# PYTHON (default python3), UV_CACHE_DIR (default <checkout>/.test-cache/uv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TAP_MARKETO_FAKESNOW_VENV:-$ROOT/.test-cache/fakesnow}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS=("fakesnow[server]==0.12.1" "snowflake-connector-python>=4.8,<4.9")
export UV_CACHE_DIR="${UV_CACHE_DIR:-$ROOT/.test-cache/uv}"
STAMP="$VENV/.installed"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "${REQUIREMENTS[*]}" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

echo "install_fakesnow.sh: installing ${REQUIREMENTS[*]} into $VENV" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if command -v uv >/dev/null; then
  UV="$(command -v uv)"
else
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir uv >&2
  UV="$VENV/bin/uv"
fi
"$UV" pip install --quiet --compile-bytecode --python "$VENV/bin/python" "${REQUIREMENTS[@]}" >&2
# fakesnow makes a folder under TMPDIR when imported: give it one to throw away.
scratch="$(mktemp -d)"
TMPDIR="$scratch" "$VENV/bin/python" -c 'import fakesnow.server, uvicorn' \
  || { rm -rf "$scratch"; echo "install_fakesnow.sh: fakesnow's server does not import" >&2; exit 1; }
rm -rf "$scratch"
printf '%s' "${REQUIREMENTS[*]}" >"$STAMP"
echo "$VENV/bin/python"
