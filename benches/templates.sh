#!/usr/bin/env bash
# What each language template costs: `wasmgate new NAME --lang L` + `wasmgate build` for rust, js and
# python, then per function on one gateway:
#   - component size;
#   - deploy (upload + compile) to the first answer;
#   - cold start after a restart: the first request, compiled code loaded from the disk cache;
#   - fresh-instance requests with one connection (wrk -c1), a new instance per request.
#
#   benches/templates.sh     # needs componentize-js and componentize-py on PATH (.ci/test installs
#                            # them into ~/.cache/wasmgate/tools)
#
# Every request targets 127.0.0.1 only; the gateway is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${WASMGATE_TOOLS_DIR:-${HOME}/.cache/wasmgate/tools}"
export PATH="$tools/npm/node_modules/.bin:$tools/venv/bin:$PATH"
DURATION="${DURATION:-5s}"
cargo build --release -q -p wasmgate
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
wasmgate="$TARGET_DIR/release/wasmgate"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() {
    "$wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state" >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 1 3000); do
        addr="$(grep -o 'http://[0-9.:]*' "$work/out" 2>/dev/null | head -n1)" || true
        [ -n "$addr" ] && return
        sleep 0.01
    done
    echo "wasmgate did not start" >&2; cat "$work/err" >&2; exit 1
}
ms() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.1f}')" "$@"; }
now() { date +%s.%N; }

langs=(rust js python)
for lang in "${langs[@]}"; do
    "$wasmgate" new "t-$lang" --lang "$lang" -f "$work/stack.yml" >/dev/null
    "$wasmgate" build -f "$work/stack.yml" --filter "t-$lang" >"$work/build-$lang.log" 2>&1 \
        || { cat "$work/build-$lang.log" >&2; exit 1; }
done

start
declare -A size deploy first
for lang in "${langs[@]}"; do
    wasm="$(find "$work/t-$lang" -name "t*$lang.wasm" -path '*/release/*' -o -name "t-$lang.wasm" -path '*/build/*' | head -n1)"
    size[$lang]="$(stat -c %s "$wasm")"
    t0="$(now)"
    "$wasmgate" deploy -f "$work/stack.yml" -g "$addr" --filter "t-$lang" >/dev/null
    curl -sf -o /dev/null -d x "$addr/function/t-$lang"
    deploy[$lang]="$(ms "$t0" "$(now)")"
done
kill "$pid"; wait "$pid" 2>/dev/null || true
start
for lang in "${langs[@]}"; do
    first[$lang]="$(curl -sf -o /dev/null -w '%{time_total}' -d x "$addr/function/t-$lang" | awk '{ printf "%.2f", $1 * 1000 }')"
done

echo "| template | component | deploy to first answer | cold start (restart, disk cache) | fresh instance per request, 1 connection |"
echo "|---|---|---|---|---|"
for lang in "${langs[@]}"; do
    out="$(wrk -c1 -t1 -d"$DURATION" --latency "$addr/function/t-$lang")"
    rps="$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")"
    p50="$(awk '$1 == "50%" { print $2 }' <<<"$out")"
    printf '| %s | %s KB | %s ms | %s ms | %s req/s, p50 %s |\n' "$lang" "$((size[$lang] / 1000))" \
        "${deploy[$lang]}" "${first[$lang]}" "$rps" "$p50"
done
