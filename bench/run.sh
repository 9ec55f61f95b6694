#!/usr/bin/env bash
# Run every benchmark in bench/ in turn: bench/api.py, then the others that exist (ingest.py, render.py,
# transcribe.py, ...). Each one starts its own server (python -m server) in a subprocess and writes
# bench/out/<name>.json.
# Usage: bash bench/run.sh [name ...]     e.g. bash bench/run.sh api ingest
# render.py reads BENCH_SECONDS, BENCH_HEIGHT and BENCH_SKIP_MOVIEPY=1 (see bench/README.md), e.g. a smoke run:
#   BENCH_SECONDS=6 BENCH_HEIGHT=640 bash bench/run.sh render
# and makes MoviePy's own venv (bench/out/venv-moviepy) on first use; render_moviepy.py is its helper, not a
# benchmark.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || { echo "no $PY: run 'make install' first" >&2; exit 1; }

# Some benchmarks compare against the ffmpeg CLI: install Debian's ffmpeg when it is missing.
if ! command -v ffmpeg >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "[run.sh] ffmpeg not found: installing Debian's ffmpeg" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi

mkdir -p bench/out
if [ "$#" -gt 0 ]; then
    names=("$@")
else
    # api first (fast, no media), then the rest in alphabetical order.
    names=()
    [ -f bench/api.py ] && names+=(api)
    for f in bench/*.py; do
        n="$(basename "$f" .py)"
        case "$n" in api|common|render_moviepy|_*) continue ;; esac
        names+=("$n")
    done
fi

for n in "${names[@]}"; do
    [ -f "bench/$n.py" ] || { echo "[run.sh] no bench/$n.py" >&2; exit 1; }
    echo "=== bench/$n.py ==="
    start=$(date +%s)
    "$PY" "bench/$n.py"
    # The API once more without the dispatcher (RUN_DISPATCHER=false): the HTTP layer alone, ~15 s.
    [ "$n" = api ] && "$PY" bench/api.py --no-dispatcher
    echo "=== bench/$n.py done in $(( $(date +%s) - start ))s ==="
    echo
done
echo "results: $(ls bench/out/*.json 2>/dev/null | tr '\n' ' ')"
