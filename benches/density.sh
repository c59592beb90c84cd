#!/usr/bin/env bash
# Density: deploy N distinct components (hello with a unique custom section each) to one gateway and
# report deploy throughput, resident memory, first-hit latency and restart-to-serving time.
#
#   benches/density.sh            # N=1000
#   N=10000 benches/density.sh    # compiles 10,000 components: about 100 ms each on two cores
#
# Every request targets 127.0.0.1 only; the gateway is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"
rustup target add wasm32-wasip2 >/dev/null
cargo build-guests -q
cargo build --release -q -p wasmgate
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() {
    "$TARGET_DIR/release/wasmgate" serve --listen 127.0.0.1:0 --state-dir "$work/state" \
        >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 1 600); do
        addr="$(grep -o 'http://[0-9.:]*' "$work/out" 2>/dev/null | head -n1)" || true
        [ -n "$addr" ] && return
        sleep 0.01
    done
    echo "wasmgate did not start" >&2; cat "$work/err" >&2; exit 1
}
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status"; }

python3 - "$N" guests/functions/target/wasm32-wasip2/release/hello.wasm "$work/wasm" <<'PY'
import os, sys
n, base_path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = open(base_path, "rb").read()
def leb(v):
    b = bytearray()
    while True:
        byte = v & 0x7F; v >>= 7
        if v == 0: b.append(byte); return bytes(b)
        b.append(byte | 0x80)
os.makedirs(out, exist_ok=True)
name = b"wasmgate-variant"
for i in range(n):
    content = leb(len(name)) + name + i.to_bytes(8, "little")
    open(f"{out}/f{i}.wasm", "wb").write(base + b"\x00" + leb(len(content)) + content)
PY

start
echo "deploying $N distinct components..." >&2
python3 - "$addr" "$N" "$work/wasm" >"$work/deploy.txt" <<'PY'
import http.client, json, sys, time, urllib.parse
addr, n, wasm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
u = urllib.parse.urlparse(addr)
conn = http.client.HTTPConnection(u.hostname, u.port)
started = time.monotonic()
for i in range(n):
    body = json.dumps({"service": f"f{i}", "image": f"{wasm}/f{i}.wasm"})
    conn.request("POST", "/system/functions", body)
    r = conn.getresponse(); r.read()
    assert r.status == 202, (i, r.status)
print(f"{n / (time.monotonic() - started):.1f}")
PY
deploys_per_s="$(cat "$work/deploy.txt")"
rss_deployed="$(rss_mib)"

# Restart: the state directory and the compiled-code cache are warm.
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
t0=$(date +%s.%N)
start
until curl -fsS -o /dev/null "$addr/function/f0"; do sleep 0.005; done
t1=$(date +%s.%N)
restart_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
rss_restarted="$(rss_mib)"

python3 - "$addr" "$N" >"$work/hits.txt" <<'PY'
import http.client, sys, time, urllib.parse
addr, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(addr)
conn = http.client.HTTPConnection(u.hostname, u.port)
def touch(order):
    times = []
    for i in order:
        t = time.perf_counter()
        conn.request("GET", f"/function/f{i}")
        r = conn.getresponse(); r.read()
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, (i, r.status)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]
first = touch(range(n - 1, -1, -1))
second = touch(range(n))
print(f"{first[0]:.3f} {first[1]:.3f} {second[0]:.3f} {second[1]:.3f}")
PY
read -r first_p50 first_p99 second_p50 second_p99 <"$work/hits.txt"
rss_touched="$(rss_mib)"

echo
echo "density: $N distinct hello components, $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "  deploy throughput (validate + compile + persist)   $deploys_per_s deploys/s"
echo "  resident memory after deploying all                 $rss_deployed MiB"
echo "  restart to first response                           $restart_ms ms"
echo "  resident memory just after the restart              $rss_restarted MiB"
echo "  first request to each (newest first) p50 / p99      $first_p50 / $first_p99 ms"
echo "  second request to each p50 / p99                   $second_p50 / $second_p99 ms"
echo "  resident memory after touching each                 $rss_touched MiB"
