#!/usr/bin/env bash
# Messages per second through a NATS topic on one node, side by side with the same function over HTTP:
# a nats-server -js and one `wasmgate serve --nats` on loopback, `hello` deployed with
# `topic: bench.hello`, then `topic-bench` (benches/src/bin/topic-bench.rs) alternates rounds of
#   publish  MESSAGES published at once, timed until the gateway has run them all (its metrics);
#   request  MESSAGES NATS requests with CONCURRENCY in flight, each waiting for the reply;
#   http     MESSAGES POST /function/hello over CONCURRENCY keep-alive connections;
# REPEATS times, and prints each round, the medians and the ratios to HTTP.
#
#   benches/topics.sh                                   # 20000 messages, 16 in flight, 5 rounds
#   MESSAGES=50000 CONCURRENCY=32 REPEATS=7 benches/topics.sh
#   PROFILE=dev benches/topics.sh                       # the debug build (dependencies optimised)
#   HELLO_WASM=path/to/hello.wasm benches/topics.sh     # a component already built
#
# Every request targets 127.0.0.1 only; NATS and the gateway are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES="${MESSAGES:-20000}"
CONCURRENCY="${CONCURRENCY:-16}"
REPEATS="${REPEATS:-5}"
PROFILE="${PROFILE:-release}"
flag="--release"; dir="release"
if [ "$PROFILE" = dev ]; then flag=""; dir="debug"; fi
command -v nats-server >/dev/null || { echo "needs nats-server (apt-get install -y nats-server)" >&2; exit 1; }
# The component: $HELLO_WASM, else the guests' own build (in $CARGO_TARGET_DIR when it is set).
if [ -z "${HELLO_WASM:-}" ]; then
    rustup target add wasm32-wasip2 >/dev/null
    cargo build-guests -q
    HELLO_WASM="$PWD/${CARGO_TARGET_DIR:-guests/functions/target}/wasm32-wasip2/release/hello.wasm"
    case "${CARGO_TARGET_DIR:-}" in /*) HELLO_WASM="$CARGO_TARGET_DIR/wasm32-wasip2/release/hello.wasm" ;; esac
fi
cargo build $flag -q -p wasmgate -p wasmgate-benches --bin wasmgate --bin topic-bench
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
work="$(mktemp -d)"
# Copies, so that another build in the same target directory cannot swap them mid-run.
cp "$TARGET_DIR/$dir/wasmgate" "$TARGET_DIR/$dir/topic-bench" "$work/"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 500); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.01; done

# From $work, so that the repository's stack.yml is not loaded.
(cd "$work" && exec ./wasmgate serve --listen 127.0.0.1:0 --state-dir "$work/state" \
    --nats "nats://127.0.0.1:$port" --node-name bench >"$work/out" 2>"$work/err") &
pids+=($!)
addr=""
for _ in $(seq 1 1000); do
    addr="$(grep -o 'http://[0-9.:]*' "$work/out" 2>/dev/null | head -n1)" || true
    [ -n "$addr" ] && break
    sleep 0.01
done
[ -n "$addr" ] || { echo "wasmgate did not start" >&2; cat "$work/err" >&2; exit 1; }

wasm="$HELLO_WASM"
curl -sf -o /dev/null -X POST "$addr/system/functions" -d "{\"service\":\"hello\",\"image\":\"$wasm\",\"annotations\":{\"topic\":\"bench.hello\"}}"
until curl -sf "$addr/metrics" | grep -q '^wasmgate_topic_subscriptions{function_name="hello.openfaas-fn"} 1'; do sleep 0.05; done

echo "wasmgate $PROFILE build, nats-server $(nats-server --version | awk '{print $NF}'), $(nproc) cores shared by the gateway, NATS and the client"
"$work/topic-bench" "${addr#http://}" "nats://127.0.0.1:$port" hello.openfaas-fn bench.hello \
    "$MESSAGES" "$CONCURRENCY" "$REPEATS"
