#!/usr/bin/env bash
# SIPp interop: the shared SIPp scenarios (../shared/bench) through the gateway, over UDP and
# over TCP, must complete every call. Loopback only, bounded in calls and time.
#
# Usage: bench/interop.sh [CALLS]       (default 300 calls per transport at 50 calls/s)
# Environment: OCEDGE_BIN (default target/debug/ocedge), OCEDGE_SHARED (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-300}
tag=interop
wait_tries=100
. bench/common.sh
work=$(mktemp -d)

run() { # transport(udp|tcp) config
    local t=$1 cfg=$work/gateway-$1.toml st=u1
    [ "$t" = tcp ] && st=t1
    # The emulator's seed and the snapshot: absolute paths, wherever this clone lives.
    sed -e "s|\.\./shared/bench/|$shared/bench/|" -e "s|target/bench/|$work/|" "$2" >"$cfg"
    "$bin" run --config "$cfg" >"$work/gw-$t.log" 2>&1 &
    pids+=($!)
    wait_port "$t" 5062
    (cd "$work" && exec timeout 120 sipp -sf "$shared/bench/uas_answer.xml" -i 127.0.0.1 -p 5070 -t "$st" \
        -nostdin -trace_err >"$work/uas-$t.out" 2>&1) &
    pids+=($!)
    wait_port "$t" 5070
    local rc=0
    (cd "$work" && timeout 120 sipp 127.0.0.1:5062 -sf "$shared/bench/uac_call.xml" \
        -inf "$shared/bench/sipp_called_numbers.csv" -i 127.0.0.1 -t "$st" -r 50 -m "$calls" \
        -d 200 -timeout 90s -timeout_error -nostdin -trace_stat -stf "uac-$t.csv" -trace_err \
        >"uac-$t.out" 2>&1) || rc=$?
    local last ok failed
    last=$(tail -n 1 "$work/uac-$t.csv")
    ok=$(echo "$last" | awk -F';' '{print $16}')
    failed=$(echo "$last" | awk -F';' '{print $18}')
    echo "interop $t: calls=$calls successful=$ok failed=$failed sipp_rc=$rc"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    if [ "$rc" != 0 ] || [ "$ok" != "$calls" ] || [ "$failed" != 0 ]; then
        echo "interop $t FAILED; logs in $work" >&2
        tail -n 20 "$work/gw-$t.log" "$work/uac-$t.out" >&2 || true
        return 1
    fi
}

run udp bench/gateway.toml
run tcp bench/gateway-tcp.toml
rm -rf "$work"
