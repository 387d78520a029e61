#!/usr/bin/env bash
# Prints the path of a Python interpreter that has the seeds' stack (scripts/bench/requirements.txt),
# creating the virtual environment on first use. Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${QUOTESTREAM_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/quotestream-bench-venv}
stamp="$venv/.requirements"
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
    echo "bench: creating the Python environment in $venv (pip, from PyPI) ..." >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q -r "$here/requirements.txt" >&2
    cp "$here/requirements.txt" "$stamp"
fi
echo "$venv/bin/python"
