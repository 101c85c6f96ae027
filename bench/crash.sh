#!/usr/bin/env bash
# Crash test for call timing (issue 5): SIPp calls through the gateway at RATE calls/s with
# random hold times (1-5 s), `kill -9` of the gateway KILL_AFTER seconds in, an immediate
# restart; then the emulator (its own process, so it outlives the gateway) must hold exactly
# one answered record for every call SIPp completed, none twice, with durations matching
# SIPp's own call lengths. KILL_AFTER=0 runs without a kill (the accuracy run).
# Loopback only; bounded in calls and time.
#
# Usage: bench/crash.sh [RATE] [CALLS] [KILL_AFTER]     (default 200 2000 4)
#
# Outage mode (OCEDGE_OUTAGE=SECONDS): instead of the kill, the emulator drops every
# call-durations request from KILL_AFTER for SECONDS (connections closed unanswered), then
# recovers; every record must still arrive exactly once. Size CALLS so the load spans the
# outage, e.g. OCEDGE_OUTAGE=180 bench/crash.sh 50 12000 10.
#
# Reload mode (OCEDGE_RELOADS=N): instead of the kill, SIGHUP (reload) N times, once a
# second from KILL_AFTER; no call may fail, e.g. OCEDGE_RELOADS=5 bench/crash.sh 200 2000 2.
# Disk load (OCEDGE_DISK_LOAD=1): while SIPp runs, a loop writes 64 MB files with fdatasync
# next to the spool (each deleted before the next), so the accuracy check also proves that
# no disk wait of the gateway's (fsyncs above all) delays SIP messages.
# Environment: OCEDGE_BIN (default target/debug/ocedge), OCEDGE_SHARED (default ../shared),
#              OCEDGE_CRASH_DIR (default target/crash; wiped first),
#              OCEDGE_MAX_DIFF_MS (default 20: p99 duration difference allowed without a kill).
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-200}
calls=${2:-2000}
kill_after=${3:-4}
tag=crash
. bench/common.sh
work=${OCEDGE_CRASH_DIR:-target/crash}
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
scenario=$(pwd)/bench/uac_timed.xml
# SIPp's global timeout: the load's length plus the longest hold and retransmissions.
limit=$(( calls / rate + 60 ))
gw=
cleanup() {
    [ -n "$gw" ] && kill "$gw" 2>/dev/null || true
    kill_pids
}

sed -e "s|\.\./shared/bench/|$shared/bench/|" -e "s|target/crash/|$work/|" bench/crash.toml >"$work/crash.toml"
# The carrier's export files too: the check wants every uploaded record in them exactly
# once (a kill landing between a batch's write and its position is rolled back at restart).
printf '\n[cdr.export]\ndir = "%s/export"\n' "$work" >>"$work/crash.toml"
export OCEDGE_API_SECRET=crash-test

start_emulator "$work/emulator.log"

start_gateway() { # log
    "$bin" run --config "$work/crash.toml" >"$work/$1" 2>&1 &
    gw=$!
    wait_port udp 5062
}
start_gateway gw-1.log

(cd "$work" && exec timeout $(( limit + 60 )) sipp -sf "$shared/bench/uas_answer.xml" -i 127.0.0.1 -p 5070 -t u1 \
    -nostdin -trace_err >"$work/uas.out" 2>&1) &
pids+=($!)
wait_port udp 5070

(cd "$work" && exec timeout $(( limit + 30 )) sipp 127.0.0.1:5062 -sf "$scenario" \
    -inf "$shared/bench/sipp_called_numbers.csv" -i 127.0.0.1 -t u1 -r "$rate" -m "$calls" \
    -recv_timeout 15000 -timeout "${limit}s" -nostdin -trace_stat -stf uac.csv -trace_err -trace_logs \
    -log_file uac.log \
    >"$work/uac.out" 2>&1) &
uac=$!
load=
if [ -n "${OCEDGE_DISK_LOAD:-}" ]; then
    (while :; do
        dd if=/dev/zero of="$work/disk-load" bs=1M count=64 conv=fdatasync 2>/dev/null
        rm -f "$work/disk-load"
    done) &
    load=$!
    pids+=($load)
    echo "crash: disk load on (64 MB writes with fdatasync, in a loop)"
fi

faults() { # JSON body
    python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request("http://127.0.0.1:8089/emulator/faults", data=sys.argv[1].encode(), headers={"Content-Type": "application/json"}), timeout=10).read()' "$1"
}

if [ -n "${OCEDGE_RELOADS:-}" ]; then
    sleep "$kill_after"
    for _ in $(seq 1 "$OCEDGE_RELOADS"); do
        kill -HUP "$gw"
        sleep 1
    done
    echo "crash: ${OCEDGE_RELOADS} reloads under load"
    kill_after=0
elif [ -n "${OCEDGE_OUTAGE:-}" ]; then
    sleep "$kill_after"
    faults '{"dropRate": 1.0, "pathPrefix": "/v1.0/operatorConnect/callDurations"}'
    echo "crash: call-durations API unreachable for ${OCEDGE_OUTAGE}s"
    sleep "$OCEDGE_OUTAGE"
    faults '{}'
    echo "crash: API back"
    kill_after=0
elif [ "$kill_after" != 0 ]; then
    sleep "$kill_after"
    kill -9 "$gw"
    wait "$gw" 2>/dev/null || true
    echo "crash: gateway killed after ${kill_after}s; restarting"
    start_gateway gw-2.log
fi

rc=0
wait "$uac" || rc=$?
echo "crash: SIPp UAC finished (rc=$rc)"
if [ -n "$load" ]; then
    kill "$load" 2>/dev/null || true
    wait "$load" 2>/dev/null || true
    rm -f "$work/disk-load"
fi
if [ -n "${OCEDGE_RELOADS:-}" ]; then
    failed=$(tail -n 1 "$work/uac.csv" | awk -F';' '{print $18}')
    if [ "$rc" != 0 ] || [ "$failed" != 0 ]; then
        echo "crash: FAIL: calls failed across reloads (failed=$failed, sipp rc=$rc)" >&2
        exit 1
    fi
    grep -c 'configuration reloaded' "$work/gw-1.log" | sed 's/^/crash: reloads logged: /'
fi
python3 bench/crash_check.py --work "$work" --bin "$bin" --calls "$calls" \
    --emulator http://127.0.0.1:8089 --killed "$kill_after" --max-diff "${OCEDGE_MAX_DIFF_MS:-20}" \
    --export "$work/export"
