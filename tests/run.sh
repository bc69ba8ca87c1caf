#!/usr/bin/env bash
# The medsynth test suite: unit, integration and doc tests, with the Python reference
# packages (nibabel, ...) that some tests compare against installed in a private venv.
#
#   tests/run.sh            # from the repository root, on a fresh machine
#
# MEDSYNTH_PYTHON may name an interpreter that already has tests/python/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MEDSYNTH_PYTHON:-}" ]; then
    req=tests/python/requirements.txt
    key=$(sha256sum "$req" | cut -c1-12)
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/medsynth/pyref-$key"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import nibabel' 2>/dev/null; then
        echo "tests/run.sh: installing Python reference packages into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    fi
    export MEDSYNTH_PYTHON="$venv/bin/python"
fi

cargo test --locked "$@"
