#!/usr/bin/env bash
# Install Meltano into a virtual environment of its own (never into the project's .venv: Meltano
# pins its own dependencies and runs every plugin in a venv of its own anyway).
#
#   bash .ci/install_meltano.sh      prints the path of the `meltano` executable on stdout
#
# Everything goes under the checkout's .test-cache/ (gitignored; delete it to undo): the venv in
# .test-cache/meltano, uv's download cache in .test-cache/uv. Nothing is written to the home
# folder. Idempotent: an existing venv with the wanted version is reused. Safe to call from
# several pytest-xdist workers at once (a lock file serialises them). uv, when it can be had,
# makes the install take a few seconds instead of half a minute.
#
# Knobs (environment): TAP_MARKETO_MELTANO_VENV (default <checkout>/.test-cache/meltano),
# TAP_MARKETO_MELTANO_VERSION (default 4.4.1), PYTHON (default python3), UV_CACHE_DIR (default
# <checkout>/.test-cache/uv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${TAP_MARKETO_MELTANO_VERSION:-4.4.1}"
VENV="${TAP_MARKETO_MELTANO_VENV:-$ROOT/.test-cache/meltano}"
PYTHON="${PYTHON:-python3}"
MELTANO="$VENV/bin/meltano"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$ROOT/.test-cache/uv}"

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("meltano"))' 2>/dev/null
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

if [[ -x "$MELTANO" ]] && [[ "$(installed_version)" == "$VERSION" ]]; then
  echo "$MELTANO"
  exit 0
fi

echo "install_meltano.sh: installing meltano $VERSION into $VENV" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if command -v uv >/dev/null; then
  UV="$(command -v uv)"
else
  # Meltano depends on uv anyway; installing it first lets it install the rest quickly.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir uv >&2
  UV="$VENV/bin/uv"
fi
# Compile bytecode now: with PYTHONDONTWRITEBYTECODE set (as on some CI machines) every meltano
# command would otherwise recompile its imports, about 2 s a call.
"$UV" pip install --quiet --compile-bytecode --python "$VENV/bin/python" "meltano==$VERSION" >&2
[[ "$(installed_version)" == "$VERSION" ]] || { echo "install_meltano.sh: meltano $VERSION did not install" >&2; exit 1; }
echo "$MELTANO"
