#!/usr/bin/env bash
# Soak: a million requests (REQUESTS) through one gateway, hello under wrk with hostile functions called
# on the side (traps, memory bombs, endless loops, big streams), sampling resident memory after every
# round. Memory should level off after warm-up and not grow after.
#
#   benches/soak.sh                    # 1,000,000 hello requests, 16 connections
#   REQUESTS=5000000 benches/soak.sh
#
# Not run in CI. Every request targets 127.0.0.1 only; the gateway is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS="${REQUESTS:-1000000}"
CONNECTIONS="${CONNECTIONS:-16}"
ROUND="${ROUND:-5s}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
rustup target add wasm32-wasip2 >/dev/null
cargo build-guests -q
cargo build --release -q -p wasmgate
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
G=guests/functions/target/wasm32-wasip2/release
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$TARGET_DIR/release/wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state" \
    --function "hello=$G/hello.wasm" --function "trap=$G/trap.wasm" --function "memhog=$G/memhog.wasm" \
    --function "bigstream=$G/bigstream.wasm" --function "spin=$G/spin.wasm" \
    --default-timeout 1s >"$work/out" 2>"$work/err" &
gateway=$!
pids+=("$gateway")
for _ in $(seq 1 100); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/out" | head -n1)"
rss() { awk '/VmRSS/ {print $2}' "/proc/$gateway/status"; }

# Hostile calls on the side, one after another, for the whole run.
# Each call's status goes to a file, so the summary can say how many ran and how they ended.
hostile() {
    while true; do
        for path in trap trap/recurse trap/after-start memhog "bigstream?mb=16" spin; do
            curl -s -o /dev/null -w "%{http_code} $path\n" "$url/function/$path" >>"$work/hostile" || true
        done
    done
}
hostile &
pids+=("$!")

echo "soak: $REQUESTS hello requests at $CONNECTIONS connections, hostile calls on the side"
printf '%10s %12s %12s\n' round requests "rss KiB"
printf '%10s %12s %12s\n' start 0 "$(rss)"
total=0
round=0
while [ "$total" -lt "$REQUESTS" ]; do
    round=$((round + 1))
    n="$(wrk -t2 -c"$CONNECTIONS" -d"$ROUND" "$url/function/hello" | awk '/requests in/ {print $1}')"
    total=$((total + n))
    printf '%10s %12s %12s\n' "$round" "$total" "$(rss)"
done
echo "hostile calls on the side (count, status, path):"
sort "$work/hostile" | uniq -c | sort -k3
echo "gateway error lines: $(grep -c ' ERROR ' "$work/err" || true)"
