#!/usr/bin/env bash
# Quality and reconciliation end to end (issue 6), loopback only, bounded:
#  1. SIPp calls through the gateway (random hold 1-5 s), records uploaded to the emulator
#     (its own process, so its discrepancies can be set from outside);
#  2. an SBC (SIPp, from the configured SBC's address) sends RFC 6035 reports: every one
#     answered 200 and found exactly once in the quality JSONL files;
#  3. known discrepancies injected in Microsoft's records (3 drifted by +5 s, 2 dropped,
#     1 extra call); `ocedge reconcile` over the run's window must find exactly those.
#
# Usage: bench/quality_reconcile.sh [CALLS] [REPORTS]      (default 60 20)
# Environment: OCEDGE_BIN (default target/debug/ocedge), OCEDGE_SHARED (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-60}
reports=${2:-20}
tag=qr
. bench/common.sh
work=target/quality-reconcile
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
scen=$(pwd)/bench

{
    sed -e "s|\.\./shared/bench/|$shared/bench/|" -e "s|target/crash/|$work/|" bench/crash.toml
    printf '\n[cdr.export]\ndir = "%s/export"\n' "$work"
    printf '\n[quality]\ndir = "%s/quality"\n' "$work"
} >"$work/gateway.toml"
export OCEDGE_API_SECRET=qr-test
from=$(date -u -d '-2 min' +%Y-%m-%dT%H:%M:%SZ)

start_emulator "$work/emulator.log"
"$bin" run --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_port udp 5062
(cd "$work" && exec timeout 120 sipp -sf "$shared/bench/uas_answer.xml" -i 127.0.0.1 -p 5070 -t u1 \
    -nostdin >"$work/uas.out" 2>&1) &
pids+=($!)
wait_port udp 5070

# 1. Calls, and 2. reports from the SBC's address (127.0.0.1) at the same time.
(cd "$work" && timeout 120 sipp 127.0.0.1:5062 -sf "$scen/uac_timed.xml" \
    -inf "$shared/bench/sipp_called_numbers.csv" -i 127.0.0.1 -t u1 -r 20 -m "$calls" \
    -recv_timeout 15000 -timeout 100s -nostdin -trace_stat -stf uac.csv -trace_logs \
    -log_file uac.log >uac.out 2>&1) &
uac=$!
(cd "$work" && timeout 60 sipp 127.0.0.1:5062 -sf "$scen/sbc_publish.xml" \
    -i 127.0.0.1 -t u1 -r 10 -m "$reports" -timeout 50s -nostdin -trace_stat -stf pub.csv \
    >pub.out 2>&1) || { echo "qr: FAIL: quality reports not all answered 200" >&2; tail -5 "$work/pub.out" >&2; exit 1; }
wait "$uac" || { echo "qr: FAIL: SIPp calls failed" >&2; tail -5 "$work/uac.out" >&2; exit 1; }

python3 bench/quality_reconcile_check.py --work "$work" --bin "$bin" --calls "$calls" \
    --reports "$reports" --emulator http://127.0.0.1:8089 --from "$from"
