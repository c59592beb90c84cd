#!/usr/bin/env bash
# Side-by-side load test on this machine, one run, the same hello component:
#   native hyper server, wasmgate (fresh instance per request, and with opt-in reuse), and `wasmtime serve` 48
#   per request with its defaults, per request tuned, and with instance reuse.
# Prints requests/s and latency for each, and the ratios between them.
#
#   benches/load.sh                 # 10 s per target, at 1, 16 and 64 connections
#   DURATION=30s CONNECTIONS="16 64" benches/load.sh
#   WASMTIME=/path/to/wasmtime benches/load.sh   # `cargo install --locked wasmtime-cli@48.0.8`
#
# Every load targets 127.0.0.1 only and stops after DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
THREADS="${THREADS:-2}"
WASMTIME="${WASMTIME:-$(command -v wasmtime || true)}"
# Without a wasmtime on PATH, install the reference version once into a cache (about 15 minutes on two
# cores); SKIP_WASMTIME=1 measures without it.
WASMTIME_ROOT="${WASMTIME_ROOT:-$HOME/.cache/wasmgate-bench/wasmtime-48.0.8}"
if [ -z "$WASMTIME" ] && [ -z "${SKIP_WASMTIME:-}" ]; then
    if [ ! -x "$WASMTIME_ROOT/bin/wasmtime" ]; then
        echo "installing wasmtime-cli 48.0.8 into $WASMTIME_ROOT (once)..." >&2
        cargo install --locked --quiet wasmtime-cli@48.0.8 --root "$WASMTIME_ROOT"
    fi
    WASMTIME="$WASMTIME_ROOT/bin/wasmtime"
fi

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
rustup target add wasm32-wasip2 >/dev/null
cargo build-guests -q
cargo build --release -q -p wasmgate -p wasmgate-benches
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
HELLO="guests/functions/target/wasm32-wasip2/release/hello.wasm"
work="$(mktemp -d)"
# `start` runs in a command substitution (a subshell), so server pids are kept in a file, not a variable.
cleanup() { [ -f "$work/pids" ] && xargs -r kill 2>/dev/null <"$work/pids" || true; rm -rf "$work"; }
trap cleanup EXIT

# Starts a server in the background; its address is read from the first line matching "http://".
start() {
    local name="$1"; shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    echo "$!" >>"$work/pids"
    for _ in $(seq 1 300); do
        local addr
        addr="$(grep -o 'http://[0-9.:]*' "$work/$name.out" "$work/$name.err" 2>/dev/null | head -n1 | sed 's/^[^:]*:http/http/')" || true
        if [ -n "$addr" ]; then echo "$addr"; return; fi
        sleep 0.1
    done
    echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}

# Runs wrk and prints "requests/s p50 p99" (latencies in milliseconds).
measure() {
    local url="$1"
    curl -fsS "$url" >/dev/null  # warm and check it answers
    local connections="${CONNECTIONS_NOW:-16}" threads="$THREADS"
    [ "$connections" -lt "$threads" ] && threads="$connections"
    wrk -t"$threads" -c"$connections" -d"$DURATION" --latency "$url" >"$work/wrk.txt"
    if grep -q "Non-2xx" "$work/wrk.txt"; then echo "errors from $url:" >&2; cat "$work/wrk.txt" >&2; exit 1; fi
    local rps p50 p99
    rps="$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
    p50="$(awk '$1=="50%" {print $2}' "$work/wrk.txt")"
    p99="$(awk '$1=="99%" {print $2}' "$work/wrk.txt")"
    echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }

native="$(start native "$TARGET_DIR/release/native-hello" 127.0.0.1:0)"
gate="$(start wasmgate "$TARGET_DIR/release/wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state" --function "hello=$HELLO")"
# The same component again, opted into instance reuse (128 requests per instance, as wasmtime's below).
curl -fsS -X POST "$gate/system/functions" -d "{\"service\":\"hello-reuse\",\"image\":\"$PWD/$HELLO\",\"annotations\":{\"com.wasmgate.instance-reuse\":\"128\"}}"
declare -A url=([native]="$native/" [wasmgate]="$gate/function/hello" [wasmgate-reuse]="$gate/function/hello-reuse")
names=(native wasmgate wasmgate-reuse)
if [ -n "$WASMTIME" ]; then
    # The reference host, per request with its defaults, per request tuned with its own pooling flags,
    # and reusing instances (which wasmgate does not do by default).
    tuned=(-O pooling-pagemap-scan=y -O pooling-memory-keep-resident=10485760 -O pooling-table-keep-resident=1048576)
    declare -A flags=(
        [wasmtime-default]=""
        [wasmtime-tuned]="${tuned[*]}"
        [wasmtime-reuse]="${tuned[*]} --max-instance-reuse-count 128"
    )
    for name in wasmtime-default wasmtime-tuned wasmtime-reuse; do
        port=$(( 20000 + RANDOM % 20000 ))
        # shellcheck disable=SC2086
        start "$name" "$WASMTIME" serve -Scli ${flags[$name]} --addr "127.0.0.1:$port" "$HELLO" >/dev/null
        url[$name]="http://127.0.0.1:$port/"
        names+=("$name")
    done
else
    echo "(wasmtime not found: install it with 'cargo install --locked wasmtime-cli@48.0.8' or set WASMTIME)" >&2
fi

echo
echo "hello component, wrk -t$THREADS -d$DURATION, $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
declare -A rate
for connections in $CONNECTIONS; do
    echo
    printf '%-18s %6s %12s %10s %10s\n' target conns "requests/s" "p50 ms" "p99 ms"
    for name in "${names[@]}"; do
        read -r rps p50 p99 <<<"$(CONNECTIONS_NOW=$connections measure "${url[$name]}")"
        rate[$name]="$rps"
        printf '%-18s %6s %12.0f %10s %10s\n' "$name" "$connections" "$rps" "$p50" "$p99"
    done
    ratio() { awk -v a="${rate[$1]}" -v b="${rate[$2]}" 'BEGIN { printf "%.2f", a / b }'; }
    echo "  wasmgate / native = $(ratio wasmgate native)"
    if [ -n "$WASMTIME" ]; then
        echo "  per request: wasmgate / wasmtime-default = $(ratio wasmgate wasmtime-default)   wasmgate / wasmtime-tuned = $(ratio wasmgate wasmtime-tuned)"
        echo "  reuse:       wasmgate-reuse / wasmtime-reuse = $(ratio wasmgate-reuse wasmtime-reuse)"
    fi
done
