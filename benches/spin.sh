#!/usr/bin/env bash
# What Spin's host interfaces cost, per request (a fresh instance each): one gateway serves a Spin app
# of two components, spin5-front (spin-sdk 5.2, wasi:http 0.2, fermyon:spin/key-value@2.0.0) and
# spin7-app (spin-sdk 7, wasi:http 0.3, spin:key-value@3.0.0), beside the plain hello functions of
# both worlds and spin-sdk 7's own hello. wrk loads each route in turn, REPEATS times, alternating;
# prints the median requests/s and server CPU µs per request (from /proc), and each against the
# plain page of its own component:
#   spin5 plain    GET  /s5/plain   the component's page, no host call
#   spin5 kv get   GET  /s5/kv/k    open the default store, get a key
#   spin5 kv set   POST /s5/kv/k    open, set the key (durable before the answer)
#   spin7 open     GET  /s7/nothing open the default store only
#   spin7 kv get   GET  /s7/kv/k    open, get
#   spin7 kv set   POST /s7/kv/k    open, set (durable)
#
#   benches/spin.sh                                  # the release build of this tree
#   BUILD=/path/to/wasmgate DURATION=5s REPEATS=3 CONNECTIONS=16 benches/spin.sh
#
# The guests must have been built (cargo build-guests). Every load targets 127.0.0.1 only. Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-5s}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-16}"
G="$PWD/guests/functions/target/wasm32-wasip2/release"
if [ -z "${BUILD:-}" ]; then
    cargo build --release -q -p wasmgate
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    BUILD="$TARGET_DIR/release/wasmgate"
fi
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cat >"$work/spin.toml" <<EOF
spin_manifest_version = 2

[application]
name = "spinbench"

[[trigger.http]]
route = "/s5/..."
component = "five"

[[trigger.http]]
route = "/s7/..."
component = "seven"

[component.five]
source = "$G/spin5_front.wasm"
key_value_stores = ["default"]

[component.seven]
source = "$G/spin7_app.wasm"
key_value_stores = ["default"]
EOF
printf 'wrk.method = "POST"\nwrk.body = "v"\n' >"$work/post.lua"
port=31330
"$BUILD" serve --listen "127.0.0.1:$port" --state-dir "$work/state" -f "$work/spin.toml" \
    --function "hello=$G/hello.wasm" --function "p3-hello=$G/p3_hello.wasm" \
    --function "spin7-hello=$G/spin7_hello.wasm" >"$work/log" 2>&1 &
server=$!
base="http://127.0.0.1:$port/function"
for _ in $(seq 200); do curl -fsS "$base/spinbench/s5/plain" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$base/spinbench/s5/plain" >/dev/null || { echo "the gateway did not start:" >&2; cat "$work/log" >&2; exit 1; }

# name|method|path
targets=(
    "hello (0.2)|GET|hello"
    "spin5 plain|GET|spinbench/s5/plain"
    "spin5 kv get|GET|spinbench/s5/kv/k"
    "spin5 kv set|POST|spinbench/s5/kv/k"
    "p3-hello (0.3)|GET|p3-hello"
    "spin7-hello|GET|spin7-hello"
    "spin7 open|GET|spinbench/s7/nothing"
    "spin7 kv get|GET|spinbench/s7/kv/k"
    "spin7 kv set|POST|spinbench/s7/kv/k"
)
cpu() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
ticks=$(getconf CLK_TCK)
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A rate=() cost=()
for _ in $(seq "$REPEATS"); do
    for target in "${targets[@]}"; do
        IFS='|' read -r name method path <<<"$target"
        script=()
        [ "$method" = POST ] && script=(-s "$work/post.lua")
        c0=$(cpu)
        out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "${script[@]}" "$base/$path")
        c1=$(cpu)
        n=$(awk '/requests in/ { print $1; exit }' <<<"$out")
        r=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
        rate[$name]="${rate[$name]:-} $r"
        cost[$name]="${cost[$name]:-} $(awk -v c="$((c1 - c0))" -v hz="$ticks" -v n="$n" 'BEGIN { printf "%.1f", c / hz * 1e6 / n }')"
    done
done
echo "connections=$CONNECTIONS duration=$DURATION repeats=$REPEATS"
printf '%-16s %9s  %-24s %8s  %-20s %s\n' target "req/s" runs "CPU µs" runs "against plain (req/s, CPU)"
for target in "${targets[@]}"; do
    IFS='|' read -r name _ _ <<<"$target"
    case "$name" in spin5*) plain="spin5 plain" ;; spin7*) plain="spin7-hello" ;; *) plain="" ;; esac
    r=$(median "${rate[$name]}") c=$(median "${cost[$name]}")
    against=""
    if [ -n "$plain" ] && [ "$plain" != "$name" ]; then
        against=$(awk -v r="$r" -v c="$c" -v pr="$(median "${rate[$plain]}")" -v pc="$(median "${cost[$plain]}")" \
            'BEGIN { printf "%.2f, %.2fx", r / pr, c / pc }')
    fi
    printf '%-16s %9s  %-24s %8s  %-20s %s\n' "$name" "$r" "${rate[$name]# }" "$c" "${cost[$name]# }" "$against"
done
