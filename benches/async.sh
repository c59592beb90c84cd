#!/usr/bin/env bash
# Async queue throughput for hello, side by side with the synchronous route on the same gateway:
#   1. enqueue: wrk POSTs to /async-function/hello for $DURATION while the workers run (every 202 is
#      on disk, fsync'd, before it is sent);
#   2. drain: after the load stops, how long until every queued call has run;
#   3. completed: calls finished per second over the whole run (enqueue + drain);
#   4. the synchronous route, /function/hello, with the same wrk settings, for reference.
#
#   benches/async.sh                       # 16 connections, 8s, default queue limits
#   CONNECTIONS=64 DURATION=10s benches/async.sh
#
# Every request targets 127.0.0.1 only; the gateway is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-16}"
DURATION="${DURATION:-8s}"
rustup target add wasm32-wasip2 >/dev/null
cargo build-guests -q
cargo build --release -q -p wasmgate
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$TARGET_DIR/release/wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state" \
    --function "hello=guests/functions/target/wasm32-wasip2/release/hello.wasm" \
    "$@" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 600); do
    addr="$(grep -o 'http://[0-9.:]*' "$work/out" 2>/dev/null | head -n1)" || true
    [ -n "$addr" ] && break
    sleep 0.01
done
[ -n "$addr" ] || { echo "wasmgate did not start" >&2; cat "$work/err" >&2; exit 1; }

metric() { curl -sf "$addr/metrics" | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "hello"
LUA

curl -sf -o /dev/null "$addr/function/hello"
t0="$(date +%s.%N)"
enqueue="$(wrk -c"$CONNECTIONS" -t2 -d"$DURATION" -s "$work/post.lua" --latency "$addr/async-function/hello")"
t1="$(date +%s.%N)"
accepted="$(metric 'wasmgate_async_enqueued_total{function_name="hello.openfaas-fn"}')"
while [ "$(metric 'wasmgate_async_finished_total{function_name="hello.openfaas-fn"')" -lt "$accepted" ]; do
    sleep 0.05
done
t2="$(date +%s.%N)"
sync="$(wrk -c"$CONNECTIONS" -t2 -d"$DURATION" --latency "$addr/function/hello")"

non2xx="$(awk '/Non-2xx/ { print $NF }' <<<"$enqueue")"
python3 - "$t0" "$t1" "$t2" "$accepted" "${non2xx:-0}" <<PY
import sys
t0, t1, t2, accepted, refused = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
enqueue = """$enqueue"""
sync = """$sync"""
def field(text, key, col=1):
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == key:
            return parts[col]
    return "?"
sync_rps = float(field(sync, "Requests/sec:"))
print(f"| measure | value |")
print(f"|---|---|")
print(f"| calls accepted (202) | {accepted} in {t1 - t0:.1f} s, refused {refused} |")
print(f"| enqueue rate, load running beside the workers | {accepted / (t1 - t0):.0f} calls/s (p50 {field(enqueue, '50%')}, p99 {field(enqueue, '99%')}) |")
print(f"| drain after the load stopped | {t2 - t1:.1f} s |")
print(f"| completed, whole run | {accepted / (t2 - t0):.0f} calls/s |")
print(f"| synchronous /function/hello, same wrk | {sync_rps:.0f} requests/s (p50 {field(sync, '50%')}) |")
print(f"| async completed / sync | {accepted / (t2 - t0) / sync_rps:.2f} |")
PY
