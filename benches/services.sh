#!/usr/bin/env bash
# Async calls and durable key-value increments beside synchronous hello, as ratios, on one or more
# wasmgate builds side by side. For each build, one gateway serves hello and kvcounter, and wrk runs:
#   hello  GET /function/hello;
#   async  POST /async-function/hello for $DURATION, then waits until every accepted call has run:
#          completed calls / (load + drain) seconds (every 202 is on disk, fsync'd, before it is sent);
#   kv     POST /function/kvcounter: one wasi:keyvalue increment per request, on disk before the answer.
# Each is also given as the server's CPU time per request or call (user + system from /proc, over the
# same span), which moves far less than requests/s on a shared machine. Targets alternate, REPEATS
# runs each; medians, with the runs, and the ratios of medians async/hello and kv/hello.
#
#   benches/services.sh                                   # the release build of this tree
#   BUILDS="before=/path/to/old/wasmgate after=target/release/wasmgate" REPEATS=3 benches/services.sh
#   DURATION=5s CONNECTIONS=16 benches/services.sh --async-function-concurrency 32   # serve flags
#
# The guests must have been built (cargo build-guests). Every load targets 127.0.0.1 only. Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-5s}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-16}"
G=guests/functions/target/wasm32-wasip2/release
if [ -z "${BUILDS:-}" ]; then
    cargo build --release -q -p wasmgate
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    BUILDS="this=$TARGET_DIR/release/wasmgate"
fi
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\nwrk.body = "hello"\n' >"$work/post.lua"

names=()
declare -A port=() pid=()
p=31250
for build in $BUILDS; do
    name="${build%%=*}" binary="${build#*=}"
    p=$((p + 1))
    names+=("$name")
    port[$name]=$p
    "$binary" serve --listen "127.0.0.1:$p" --state-dir "$work/$name" \
        --function "hello=$G/hello.wasm" --function "kvcounter=$G/kvcounter.wasm" "$@" \
        >"$work/$name.log" 2>&1 &
    pid[$name]=$!
    for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$p/function/hello" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS "http://127.0.0.1:$p/function/hello" >/dev/null || { echo "$name did not start:" >&2; cat "$work/$name.log" >&2; exit 1; }
done

cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # clock ticks
ticks=$(getconf CLK_TCK)
metric() { curl -fsS "$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
now() { date +%s.%N; }
# One measure: prints "rate cpu_us_per_request".
measure() {
    local n="$1" what="$2" base="http://127.0.0.1:${port[$1]}" server="${pid[$1]}"
    local c0 c1 t0 t1 count out
    c0=$(cpu "$server") t0=$(now)
    case "$what" in
    hello) out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$base/function/hello") ;;
    kv) out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$work/post.lua" "$base/function/kvcounter") ;;
    async)
        local before
        before=$(metric "$base" 'wasmgate_async_finished_total{function_name="hello.openfaas-fn"')
        wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$work/post.lua" "$base/async-function/hello" >/dev/null
        local accepted
        accepted=$(metric "$base" 'wasmgate_async_enqueued_total{function_name="hello.openfaas-fn"}')
        while [ "$(metric "$base" 'wasmgate_async_finished_total{function_name="hello.openfaas-fn"')" -lt "$accepted" ]; do
            sleep 0.05
        done
        out="$((accepted - before)) requests in"
        ;;
    esac
    c1=$(cpu "$server") t1=$(now)
    count=$(awk '/requests in/ { print $1; exit }' <<<"$out")
    awk -v n="$count" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$ticks" \
        'BEGIN { printf "%.0f %.1f\n", n / (t1 - t0), c / hz * 1e6 / n }'
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A rate=() cost=()
for _ in $(seq "$REPEATS"); do
    for what in hello async kv; do
        for n in "${names[@]}"; do
            read -r r c < <(measure "$n" "$what")
            rate[$n/$what]="${rate[$n/$what]:-} $r"
            cost[$n/$what]="${cost[$n/$what]:-} $c"
        done
    done
done

echo "connections=$CONNECTIONS duration=$DURATION repeats=$REPEATS serve flags: ${*:-none}"
printf '%-10s %-6s %10s  %-26s %10s  %s\n' build target "per s" "runs" "CPU µs" "runs"
for n in "${names[@]}"; do
    for what in hello async kv; do
        printf '%-10s %-6s %10s  %-26s %10s  %s\n' "$n" "$what" "$(median "${rate[$n/$what]}")" \
            "${rate[$n/$what]# }" "$(median "${cost[$n/$what]}")" "${cost[$n/$what]# }"
    done
done
for n in "${names[@]}"; do
    h=$(median "${rate[$n/hello]}") a=$(median "${rate[$n/async]}") k=$(median "${rate[$n/kv]}")
    hc=$(median "${cost[$n/hello]}") ac=$(median "${cost[$n/async]}") kc=$(median "${cost[$n/kv]}")
    awk -v n="$n" -v h="$h" -v a="$a" -v k="$k" -v hc="$hc" -v ac="$ac" -v kc="$kc" 'BEGIN {
        printf "%s: async/hello %.2f, kv/hello %.2f (per second); CPU per call against hello: async %.2fx, kv %.2fx\n",
            n, a / h, k / h, ac / hc, kc / hc }'
done
