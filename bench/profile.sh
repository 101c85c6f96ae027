#!/usr/bin/env bash
# Where the gateway's CPU per call goes, under SIPp load on loopback (bench/crash.toml: the
# emulator runs as its own process, so only the gateway is measured). Not a test: a tool for
# the performance notes in docs/performance.md.
#
#   bash bench/profile.sh cpu    [RATE] [CALLS]   CPU per call from /proc (user and system),
#                                                 and the peak resident memory
#   bash bench/profile.sh stat   [RATE] [CALLS]   perf stat: context switches, page faults and
#                                                 the syscalls per call
#   bash bench/profile.sh record [RATE] [CALLS]   perf record, then bench/perf_activity.py:
#                                                 the share of each activity, kernel and user
#   bash bench/profile.sh callgrind [RATE] [CALLS]
#                                 the whole gateway's instructions per call (user space:
#                                 receive loops, proxy, call timing, spool, uploader,
#                                 runtime), counted from the first call to the last; the
#                                 instrument for changes too small for the CPU figures'
#                                 noise. Defaults 50 calls/s and 1,500 calls (valgrind is
#                                 slow); repeated runs differ by a few percent (timer ticks
#                                 and upload batches follow the clock), so compare medians.
#                                 Output: target/profile/callgrind.out (callgrind_annotate).
#   bash bench/profile.sh massif [RATE] [CALLS]
#                                 the gateway's heap under valgrind's massif (defaults as
#                                 for callgrind): its peak. Transactions linger 32 s, so
#                                 in a shorter run the peak is near the end.
#                                 Output: target/profile/massif.out (ms_print).
#
# RATE defaults to 1000 calls/s, CALLS to 10000 (bounded: SIPp stops after CALLS). Needs a
# release build (OCEDGE_BIN, default target/release/ocedge), sipp, perf for stat/record and
# valgrind for callgrind. Runs from the repository root. Output files go to target/profile/.
set -euo pipefail
tag=profile
mode=${1:-cpu}
case $mode in callgrind | massif) under_valgrind=1 ;; *) under_valgrind= ;; esac
if [ -n "$under_valgrind" ]; then
    rate=${2:-50}
    calls=${3:-1500}
else
    rate=${2:-1000}
    calls=${3:-10000}
fi
OCEDGE_BIN=${OCEDGE_BIN:-target/release/ocedge}
source bench/common.sh
case $mode in cpu | stat | record | callgrind | massif) ;; *)
    echo "$tag: mode is cpu, stat, record, callgrind or massif" >&2
    exit 2
    ;;
esac
if [ -n "$under_valgrind" ] && ! command -v valgrind >/dev/null; then
    echo "$tag: valgrind missing (apt-get install valgrind)" >&2
    exit 2
fi
if [ "$mode" = stat ] || [ "$mode" = record ] && ! command -v perf >/dev/null; then
    echo "$tag: perf missing (apt-get install linux-perf)" >&2
    exit 2
fi
out=target/profile
rm -rf target/crash "$out"
mkdir -p "$out"
export OCEDGE_API_SECRET=profile

start_emulator "$out/emulator.log"
if [ "$mode" = callgrind ]; then
    # Counting starts with the load (callgrind_control below), not at start-up.
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
        "$bin" run --config bench/crash.toml >"$out/gateway.log" 2>&1 &
    wait_tries=600
elif [ "$mode" = massif ]; then
    valgrind --tool=massif --massif-out-file="$out/massif.out" \
        "$bin" run --config bench/crash.toml >"$out/gateway.log" 2>&1 &
    wait_tries=600
else
    "$bin" run --config bench/crash.toml >"$out/gateway.log" 2>&1 &
fi
gw=$!
pids+=("$gw")
sipp -sf "$shared/bench/uas_answer.xml" -i 127.0.0.1 -p 5070 -t u1 -nostdin -max_socket 200 >"$out/uas.log" 2>&1 &
pids+=($!)
wait_port udp 5062
wait_port udp 5070
sleep 1

ticks() { awk '{print $14, $15}' "/proc/$gw/stat"; }
read -r u0 s0 < <(ticks)
seconds=$((calls / rate))
probe=
case $mode in
stat)
    perf stat -o "$out/stat.txt" -p "$gw" -e task-clock,context-switches,page-faults \
        -e syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait \
        -e syscalls:sys_enter_futex,syscalls:sys_enter_write,syscalls:sys_enter_fdatasync \
        -- sleep $((seconds > 3 ? seconds - 2 : 1)) &
    probe=$!
    ;;
callgrind)
    callgrind_control -i on "$gw" >/dev/null 2>&1
    ;;
record)
    perf record -F 999 --call-graph dwarf,16384 -o "$out/perf.data" -p "$gw" \
        -- sleep $((seconds > 3 ? seconds - 2 : 1)) >/dev/null 2>&1 &
    probe=$!
    ;;
esac
(cd "$out" && sipp 127.0.0.1:5062 -sf "$shared/bench/uac_call.xml" -inf "$shared/bench/sipp_called_numbers.csv" \
    -i 127.0.0.1 -t u1 -r "$rate" -m "$calls" -d 0 -l $((rate * 10)) -max_socket 200 -nostdin \
    -trace_stat -stf stat.csv -fd 1 >/dev/null 2>&1) || true
read -r u1 s1 < <(ticks)
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$gw/status")
[ -n "$probe" ] && wait "$probe"
if [ -n "$under_valgrind" ]; then
    # The last calls' records are uploaded within batch_wait (500 ms) of their end.
    sleep 2
    [ "$mode" = callgrind ] && callgrind_control -i off "$gw" >/dev/null 2>&1
    # A clean stop, so that valgrind writes its output.
    kill -INT "$gw"
    wait "$gw" || true
fi

python3 - "$mode" "$out/stat.csv" "$u0" "$s0" "$u1" "$s1" "$(getconf CLK_TCK)" "${hwm_kb:-0}" <<'PY'
import csv, sys
mode, path, (u0, s0, u1, s1, hz, hwm) = sys.argv[1], sys.argv[2], map(int, sys.argv[3:])
rows = list(csv.reader(open(path), delimiter=';'))
r = dict(zip(rows[0], rows[-1]))
ok = int(r['SuccessfulCall(C)'])
print(f"calls ok {ok} failed {r['FailedCall(C)']} retransmissions {r['Retransmissions(C)']}")
open(path + '.ok', 'w').write(str(ok))
if mode not in ('callgrind', 'massif'):  # under valgrind the CPU time is valgrind's
    us = lambda t: t * 1e6 / hz / max(ok, 1)
    print(f"gateway CPU per call: {us(u1 - u0 + s1 - s0):.0f} us (user {us(u1 - u0):.0f}, system {us(s1 - s0):.0f})")
    # Transactions linger 32 s: a run longer than that shows the steady state.
    print(f"gateway peak resident memory: {hwm / 1024:.0f} MB")
PY
case $mode in
stat)
    # Per call: the window is seconds-2 of load at RATE calls/s.
    python3 - "$out/stat.txt" $((rate * (seconds > 3 ? seconds - 2 : 1))) <<'PY'
import re, sys
calls = int(sys.argv[2])
for line in open(sys.argv[1]):
    m = re.match(r'\s*([\d,.]+)\s+(?:msec\s+)?(\S+)', line)
    if m and not line.lstrip().startswith('#') and m.group(2) != 'seconds':
        v = float(m.group(1).replace(',', ''))
        unit = ' us' if m.group(2) == 'task-clock' else ''
        v = v * 1000 if unit else v
        print(f"{m.group(2):40s} {v / calls:8.2f}{unit} per call")
PY
    ;;
callgrind)
    callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null >"$out/inclusive.txt"
    python3 - "$out/inclusive.txt" "$(cat "$out/stat.csv.ok")" <<'PY'
import re, sys
calls = max(int(sys.argv[2]), 1)
lines = open(sys.argv[1]).read().splitlines()
cost = lambda l: int(l.split()[0].replace(',', ''))
total = next(cost(l) for l in lines if 'PROGRAM TOTALS' in l)
print(f"gateway instructions per call: {total / calls / 1000:.1f}k")
# Inclusive: per function the largest entry (one inlined into several places has more),
# summed over the functions of a part.
tracker = r'CallTracker<P> as ocedge::proxy::policy::Policy>::on_'
parts = [
    ('receive loops (parse, proxy, sends)', [r'Shard as ocedge::transport::Sink>::deliver']),
    ('  the proxy core with its policies', [r'ocedge::proxy::core::Proxy::handle( \[|$)']),
    ('  call timing', [tracker + 'request', tracker + 'response']),
    ('  spool appends', [r'ocedge::cdr::spool::engine::Spool::append \[']),
    ('CDR uploader', [r'src/cdr/upload.rs:<tokio_util']),
    ('runtime parking', [r'worker::Context::park_internal \[']),
]
counted = [l for l in lines if re.match(r'\s*[\d,]+ ', l)]
for label, pats in parts:
    found = [max((cost(l) for l in counted if re.search(p, l)), default=0) for p in pats]
    if any(found):
        print(f"  {label:40s} {sum(found) / calls / 1000:7.1f}k  {100 * sum(found) / total:5.1f}%")
PY
    ;;
massif)
    python3 - "$out/massif.out" "$(cat "$out/stat.csv.ok")" <<'PY'
import re, sys
calls = max(int(sys.argv[2]), 1)
text = open(sys.argv[1]).read()
heap = [int(m) for m in re.findall(r'mem_heap_B=(\d+)', text)]
print(f"gateway heap: peak {max(heap, default=0) / 1e6:.2f} MB over {calls} calls")
PY
    ;;
record)
    perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$out/script.txt"
    python3 bench/perf_activity.py "$out/script.txt"
    ;;
esac
