#!/usr/bin/env bash
# Soak: a million requests (REQUESTS) through one gateway, hello under wrk with hostile functions called
# on the side (traps, memory bombs, endless loops, big streams), sampling resident memory after every
# round. Memory should level off after warm-up and not grow after.
#
#   benches/soak.sh                    # 1,000,000 hello requests, 16 connections
#   REQUESTS=5000000 benches/soak.sh
#   CHURN=1 benches/soak.sh            # and, meanwhile, 2,000 deploys (DEPLOYS) of changing components
#   WASMGATE=/path/to/wasmgate benches/soak.sh   # that build instead of this tree's release build
#
# Churn mode deploys, updates and removes CHURN_FUNCTIONS functions (8) in a loop on the side, each deploy
# with a component of its own (hello with a custom section that numbers it, so every digest is new),
# uploaded first as faas-cli and `wasmgate deploy` do. Components no function references are collected
# after GRACE (10s). Each round then also shows the deploys so far and the disk used by the state
# directory and the compiled-code cache, which should level off as memory does. The run ends once both
# REQUESTS and DEPLOYS are reached.
#
# Not run in CI. Every request targets 127.0.0.1 only; the gateway is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS="${REQUESTS:-1000000}"
CONNECTIONS="${CONNECTIONS:-16}"
ROUND="${ROUND:-5s}"
CHURN="${CHURN:-}"
DEPLOYS="${DEPLOYS:-2000}"
CHURN_FUNCTIONS="${CHURN_FUNCTIONS:-8}"
GRACE="${GRACE:-10s}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
rustup target add wasm32-wasip2 >/dev/null
cargo build-guests -q
if [ -z "${WASMGATE:-}" ]; then
    cargo build --release -q -p wasmgate
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    WASMGATE="$TARGET_DIR/release/wasmgate"
fi
G=guests/functions/target/wasm32-wasip2/release
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$WASMGATE" serve --listen 127.0.0.1:0 --state-dir "$work/state" \
    --cache-dir "$work/cache" --artifact-grace "$GRACE" \
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

# Churn on the side: upload a new variant, deploy it (create or update), call it, and remove every
# third. Each step's status goes to a file (status, step), for the summary.
variant() {
    python3 - "$G/hello.wasm" "$1" "$work/variant.wasm" <<'PY'
import sys
def leb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
name, payload = b"wasmgate-soak", sys.argv[2].encode()
body = leb(len(name)) + name + payload
wasm = open(sys.argv[1], "rb").read() + b"\x00" + leb(len(body)) + body
open(sys.argv[3], "wb").write(wasm)
PY
}
churn() {
    local k=0
    while true; do
        k=$((k + 1))
        local name="churn$((k % CHURN_FUNCTIONS))"
        variant "$k"
        local digest
        digest="$(curl -s -X POST --data-binary @"$work/variant.wasm" "$url/system/artifacts" |
            sed -n 's/.*"digest":"\([^"]*\)".*/\1/p')" || true
        local body="{\"service\":\"$name\",\"image\":\"$digest\"}"
        local code
        code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -d "$body" "$url/system/functions")" || true
        if [ "$code" = 404 ]; then
            code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -d "$body" "$url/system/functions")" || true
        fi
        echo "$code deploy" >>"$work/churn"
        curl -s -o /dev/null -w '%{http_code} call\n' "$url/function/$name" >>"$work/churn" || true
        if [ $((k % 3)) = 0 ]; then
            curl -s -o /dev/null -w '%{http_code} remove\n' -X DELETE -d "{\"functionName\":\"$name\"}" \
                "$url/system/functions" >>"$work/churn" || true
        fi
    done
}
deploys() { if [ -f "$work/churn" ]; then grep -c ' deploy$' "$work/churn" || true; else echo 0; fi; }
disk() { du -sk "$work/$1" 2>/dev/null | cut -f1; }
if [ -n "$CHURN" ]; then
    touch "$work/churn"
    churn &
    pids+=("$!")
else
    DEPLOYS=0
fi

echo "soak: $REQUESTS hello requests at $CONNECTIONS connections, hostile calls on the side" \
    "${CHURN:+, $DEPLOYS deploys of $CHURN_FUNCTIONS functions on the side}"
printf '%10s %12s %8s %12s %12s %12s\n' round requests deploys "rss KiB" "state KiB" "cache KiB"
sample() {
    printf '%10s %12s %8s %12s %12s %12s\n' "$1" "$2" "$(deploys)" "$(rss)" "$(disk state)" "$(disk cache)"
}
sample start 0
total=0
round=0
while [ "$total" -lt "$REQUESTS" ] || [ "$(deploys)" -lt "$DEPLOYS" ]; do
    round=$((round + 1))
    n="$(wrk -t2 -c"$CONNECTIONS" -d"$ROUND" "$url/function/hello" | awk '/requests in/ {print $1}')"
    total=$((total + n))
    sample "$round" "$total"
done
echo "hostile calls on the side (count, status, path):"
sort "$work/hostile" | uniq -c | sort -k3
if [ -n "$CHURN" ]; then
    echo "churn on the side (count, status, step):"
    sort "$work/churn" | uniq -c | sort -k3
fi
echo "gateway error lines: $(grep -c ' ERROR ' "$work/err" || true)"
