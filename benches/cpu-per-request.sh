#!/usr/bin/env bash
# Server CPU time per request, side by side: for each target, the CPU seconds (user + system, from
# /proc/<pid>/stat) its server process spent while wrk loaded it, divided by the requests served. On a
# shared machine this moves far less than requests/s, because time spent waiting for a core is not
# counted. Targets alternate, each runs REPEATS times, and the medians are printed.
#
#   benches/cpu-per-request.sh NAME PORT PATH -- COMMAND... [:: NAME PORT PATH -- COMMAND...]...
#   DURATION=4s REPEATS=3 CONNECTIONS=16 benches/cpu-per-request.sh \
#     wasmgate 31030 /function/hello -- target/release/wasmgate serve --listen 127.0.0.1:31030 \
#       --state-dir /tmp/s1 --function hello=guests/functions/target/wasm32-wasip2/release/hello.wasm :: \
#     wasmtime 31031 / -- wasmtime serve -Scli --addr 127.0.0.1:31031 hello.wasm
#
# Each COMMAND must serve http://127.0.0.1:PORT/PATH (loads target 127.0.0.1 only). Linux only.
set -euo pipefail
DURATION="${DURATION:-4s}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-16}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

declare -A url pid
names=()
while [ $# -gt 0 ]; do
    name="$1" port="$2" path="$3"
    [ "${4:-}" = "--" ] || { echo "expected -- after $name $port $path" >&2; exit 2; }
    shift 4
    cmd=()
    while [ $# -gt 0 ] && [ "$1" != "::" ]; do cmd+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    "${cmd[@]}" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
    pids+=("$!")
    url[$name]="http://127.0.0.1:$port$path"
    for _ in $(seq 1 150); do curl -fsS "${url[$name]}" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -fsS "${url[$name]}" >/dev/null || { echo "$name does not answer:" >&2; cat "$work/$name.log" >&2; exit 1; }
    names+=("$name")
done

ticks="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A cpu rate
echo "wrk -t2 -c$CONNECTIONS -d$DURATION x$REPEATS alternating, $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
for _ in $(seq 1 "$REPEATS"); do
    for name in "${names[@]}"; do
        server="${pid[$name]}"
        # A wrapper (env, a shell) has the server as its only child.
        child="$(pgrep -P "$server" | head -n1 || true)"
        [ -n "$child" ] && server="$child"
        before="$(cpu_ticks "$server")"
        out="$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "${url[$name]}")"
        after="$(cpu_ticks "$server")"
        if grep -q "Non-2xx" <<<"$out"; then echo "errors from $name:" >&2; echo "$out" >&2; exit 1; fi
        requests="$(awk '/requests in/ { print $1 }' <<<"$out")"
        cpu[$name]="${cpu[$name]:-} $(awk -v a="$before" -v b="$after" -v n="$requests" -v t="$ticks" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')"
        rate[$name]="${rate[$name]:-} $(awk '/Requests\/sec/ { print $2 }' <<<"$out")"
    done
done
printf '%-24s %18s %28s %14s\n' target "CPU µs/request" "runs" "req/s"
for name in "${names[@]}"; do
    printf '%-24s %18s %28s %14.0f\n' "$name" "$(median <<<"${cpu[$name]}")" "${cpu[$name]# }" "$(median <<<"${rate[$name]}")"
done
