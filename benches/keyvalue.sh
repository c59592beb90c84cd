#!/usr/bin/env bash
# Durable key-value increments beside synchronous hello, on one or more wasmgate builds side by side:
# wrk POSTs to /function/kvcounter (one wasi:keyvalue increment per request, on disk before the answer)
# and GETs /function/hello, at each connection count, the targets alternating, REPEATS runs each;
# prints the median and the runs of each, the ratio kvcounter/hello per build, and each build's
# kvcounter against the first build's.
#
#   benches/keyvalue.sh                                     # the release build of this tree
#   BUILDS="before=/path/to/old/wasmgate after=target/release/wasmgate" benches/keyvalue.sh
#   DURATION=5s REPEATS=3 CONNECTIONS="16 64" BUILDS=... benches/keyvalue.sh
#
# The guests must have been built (cargo build-guests). Every load targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-5s}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-16 64}"
G=guests/functions/target/wasm32-wasip2/release
if [ -z "${BUILDS:-}" ]; then
    cargo build --release -q -p wasmgate
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    BUILDS="this=$TARGET_DIR/release/wasmgate"
fi
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\n' >"$work/post.lua"
names=()
declare -A port=()
p=31200
for build in $BUILDS; do
    name="${build%%=*}" binary="${build#*=}"
    p=$((p + 1))
    names+=("$name")
    port[$name]=$p
    "$binary" serve --listen "127.0.0.1:$p" --state-dir "$work/$name" \
        --function "hello=$G/hello.wasm" --function "kvcounter=$G/kvcounter.wasm" >"$work/$name.log" 2>&1 &
    for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$p/function/hello" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS "http://127.0.0.1:$p/function/hello" >/dev/null || { echo "$name did not start:" >&2; cat "$work/$name.log" >&2; exit 1; }
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for c in $CONNECTIONS; do
    declare -A runs=()
    for _ in $(seq "$REPEATS"); do
        for n in "${names[@]}"; do
            base="http://127.0.0.1:${port[$n]}/function"
            rps=$(wrk -t2 -c"$c" -d"$DURATION" "$base/hello" | awk '/Requests\/sec/ {print $2}')
            runs[$n/hello]="${runs[$n/hello]:-} $rps"
            rps=$(wrk -t2 -c"$c" -d"$DURATION" -s "$work/post.lua" "$base/kvcounter" | awk '/Requests\/sec/ {print $2}')
            runs[$n/kv]="${runs[$n/kv]:-} $rps"
        done
    done
    first=""
    for n in "${names[@]}"; do
        h=$(median "${runs[$n/hello]}") k=$(median "${runs[$n/kv]}")
        echo "c=$c $n hello median=$h runs=${runs[$n/hello]}"
        echo "c=$c $n kvcounter median=$k runs=${runs[$n/kv]}"
        [ -z "$first" ] && first=$k
        awk -v h="$h" -v k="$k" -v f="$first" -v c="$c" -v n="$n" \
            'BEGIN {printf "c=%s %s kvcounter/hello=%.2f kvcounter/first=%.2f\n", c, n, k/h, k/f}'
    done
    unset runs
done
# The counters are on disk: each build's final count, read back.
for n in "${names[@]}"; do
    echo "$n kvcounter now: $(curl -fsS "http://127.0.0.1:${port[$n]}/function/kvcounter" | tr -d '\n')"
done
