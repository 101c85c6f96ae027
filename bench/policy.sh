#!/usr/bin/env bash
# Number policy end to end (issue 4): SIPp calls through the gateway from both sides, with the
# embedded API emulator seeded from ../shared/bench/assigned_numbers.csv. Every case places
# CALLS calls at RATE calls/s and every call must end with the case's final status:
#   carrier -> Microsoft: assigned called number: answered, the Request-URI rewritten to the
#     number's SIP URI; unassigned: 404.
#   Microsoft -> carrier: calling number (P-Asserted-Identity, else From) not assigned: 403;
#     X-MS-TenantID not the number's tenant: 403; assigned, its own tenant: answered.
#   Emergency numbers (911, and +1911 with the country code): answered though not assigned.
# Each case has its own SIPp on the far side, which must see exactly the answered calls (a
# refused call never reaches it); a refused call's SIPp sends the hop-by-hop ACK and the
# gateway must not retransmit its final response; and the gateway's
# ocedge_policy_decisions_total must grow by CALLS for the case's decision and nothing else.
# Loopback only: gateway on UDP 5162 (carrier side) and 5166 (Microsoft side), far sides on
# 5170 (Microsoft) and 5172 (SBC), emulator 8189, admin 9190; SIPp's own ports ephemeral.
# Bounded in calls and time.
#
# Usage: bench/policy.sh [CALLS] [RATE]      (default 20 calls per case at 10 calls/s)
# Environment: OCEDGE_BIN (default target/debug/ocedge), OCEDGE_SHARED (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-20}
rate=${2:-10}
tag=policy
wait_tries=100
. bench/common.sh
work=$(mktemp -d)
bench=$(pwd)/bench
seed=$shared/bench/assigned_numbers.csv
limit=$(( calls / rate + 20 )) # seconds one SIPp run may take
admin=http://127.0.0.1:9190/metrics

# The numbers: the seed's first assignment, a tenant other than its own, and numbers that are
# certainly not assigned (checked against the seed).
IFS=, read -r assigned tenant sip_uri _ < <(sed -n 2p "$seed")
other_tenant=$(awk -F, -v t="$tenant" 'NR > 1 && $2 != t { print $2; exit }' "$seed")
pstn=+12065550123 # the PSTN party: caller of calls to Teams, called by Teams users
unassigned_called=+14255550100
unassigned_caller=+14255550199
for n in "$pstn" "$unassigned_called" "$unassigned_caller"; do
    if awk -F, -v n="$n" '$1 == n { found = 1 } END { exit !found }' "$seed"; then
        echo "$tag: $n is assigned in $seed; pick another unassigned number" >&2
        exit 2
    fi
done
[ -n "$other_tenant" ] || { echo "$tag: $seed has a single tenant" >&2; exit 2; }

# Identity header lines for the INVITEs ([ids] in the scenarios), CRLF-separated.
pai() { printf 'P-Asserted-Identity: <sip:%s@127.0.0.1;user=phone>' "$1"; }
tenant_of() { printf 'X-MS-TenantID: %s' "$1"; }
crlf=$'\r\n'

ephemeral_ports() { # three free loopback UDP ports: SIP, control, media (media + 2 free too)
    python3 - <<'EOF'
import socket
_, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
held = []
def take(port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    held.append(s)
    return s.getsockname()[1]
sip, control = take(), take()
while True:
    media = take()
    if media + 2 > high:
        continue
    try:
        take(media + 2)  # SIPp's media sockets: -mp and -mp + 2
        break
    except OSError:
        pass
print(sip, control, media)
EOF
}

decisions() { # "decision count" lines of ocedge_policy_decisions_total, sorted
    { curl -sf --max-time 5 "$admin" || true; } |
        sed -n 's/^ocedge_policy_decisions_total{decision="\([a-z_]*\)"} \([0-9]*\)$/\1 \2/p' | sort
}

column() { # file name: the named column's value on the last line of a SIPp ';' CSV file
    [ -f "$1" ] || { echo missing; return; }
    awk -F';' -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i }
        END { print (k ? $k : "missing") }' "$1"
}

# SIPp binds its SIP, media (-mp, -mp + 2) and control (-cp) ports at start, in that order,
# before any call, and exits if one is taken; each is asked for explicitly (SIPp's defaults
# are fixed ports), so a port taken between ephemeral_ports and SIPp's bind (other processes
# bind ephemeral ports all the time) is retried with new ones.
start_uas() { # dir port: the far side's SIPp in the background, its pid in `uas`
    local dir=$1 port=$2 sip control media
    for _ in 1 2 3 4 5; do
        read -r sip control media < <(ephemeral_ports)
        (cd "$dir" && exec timeout $(( limit + 10 )) sipp -sf "$bench/policy_uas.xml" \
            -i 127.0.0.1 -p "$port" -ci 127.0.0.1 -cp "$control" -mp "$media" \
            -timeout "${limit}s" -nostdin -trace_stat -stf uas.csv -trace_logs -log_file uas.log \
            -trace_err -error_file uas.err >uas.out 2>&1) &
        uas=$!
        pids+=("$uas")
        for _ in $(seq 1 50); do # up once its last port, the control port, is bound
            if ss -lun | grep -q "127.0.0.1:$port " && ss -lun | grep -q "127.0.0.1:$control "
            then return 0; fi
            kill -0 "$uas" 2>/dev/null || break
            sleep 0.1
        done
        kill "$uas" 2>/dev/null || true
        wait "$uas" 2>/dev/null || true
        grep -q 'Address already in use' "$dir/uas.out" || break
        rm -f "$dir"/uas.*
    done
    echo "$tag: the far side's SIPp did not start on port $port" >&2
    tail -n 5 "$dir/uas.out" >&2 || true
    return 1
}

run_uac() { # dir port scenario called caller ids: the calling SIPp; its exit code in `rc`
    local dir=$1 port=$2 scenario=$3 called=$4 caller=$5 ids=$6 sip control media
    for _ in 1 2 3 4 5; do
        read -r sip control media < <(ephemeral_ports)
        rc=0
        (cd "$dir" && timeout $(( limit + 10 )) sipp "127.0.0.1:$port" -sf "$bench/$scenario" \
            -i 127.0.0.1 -p "$sip" -ci 127.0.0.1 -cp "$control" -mp "$media" \
            -m "$calls" -r "$rate" -d 100 -key called "$called" -key caller "$caller" \
            -key ids "$ids" -timeout "${limit}s" -timeout_error -nostdin \
            -trace_stat -stf uac.csv -trace_counts -trace_err -error_file uac.err \
            >uac.out 2>&1) || rc=$?
        [ "$rc" != 0 ] && grep -q 'Address already in use' "$dir/uac.out" || return 0
        rm -f "$dir"/uac.* "$dir"/*_counts.csv # nothing was sent: start again
    done
}

sed -e "s|\.\./shared/bench/|$shared/bench/|" -e "s|target/policy/|$work/|" \
    bench/policy.toml >"$work/policy.toml"
"$bin" run --config "$work/policy.toml" >"$work/gw.log" 2>&1 &
gw=$!
pids+=("$gw")
wait_port udp 5162
wait_port udp 5166
loaded=0
for _ in $(seq 1 100); do # the listeners open before the table after startup_wait
    metrics=$(curl -sf --max-time 2 "$admin" || true)
    if grep -qx 'ocedge_numbers_loaded 1' <<<"$metrics"; then loaded=1; break; fi
    sleep 0.1
done
if [ "$loaded" != 1 ]; then
    echo "$tag: the gateway never loaded the number table; logs in $work" >&2
    tail -n 30 "$work/gw.log" >&2 || true
    exit 1
fi

failed=0
n=0
run_case() { # name from(carrier|microsoft) expect(200|403|404) decision called caller ids [uri]
    local name=$1 from=$2 expect=$3 decision=$4 called=$5 caller=$6 ids=$7 uri=${8:-}
    local dir=$work/case$(( ++n )) gw_port=5162 far_port=5170 far=Microsoft
    [ "$from" = microsoft ] && { gw_port=5166; far_port=5172; far=SBC; }
    local scenario=policy_uac_call.xml want_far=$calls
    [ "$expect" = 200 ] || { scenario=policy_uac_$expect.xml; want_far=0; }
    [ -n "$ids" ] || { echo "$tag: case $name has no identity headers" >&2; exit 2; }
    mkdir -p "$dir"
    local uas rc before after
    start_uas "$dir" "$far_port"
    before=$(decisions)
    run_uac "$dir" "$gw_port" "$scenario" "$called" "$caller" "$ids"
    after=$(decisions)
    kill "$uas" 2>/dev/null || true # timeout hands SIGTERM on: SIPp writes its statistics
    wait "$uas" 2>/dev/null || true
    pids=("$gw")

    local ok fail far_calls invites delta problems=()
    ok=$(column "$dir/uac.csv" 'SuccessfulCall(C)')
    fail=$(column "$dir/uac.csv" 'FailedCall(C)')
    far_calls=$(column "$dir/uas.csv" 'IncomingCall(C)')
    invites=$(grep -c '^INVITE ' "$dir/uas.log" 2>/dev/null || true)
    [ "$rc" = 0 ] || problems+=("caller's SIPp exited $rc")
    [ "$ok" = "$calls" ] && [ "$fail" = 0 ] || problems+=("$ok calls got $expect, $fail failed")
    [ "$far_calls" = "$want_far" ] && [ "$invites" = "$want_far" ] ||
        problems+=("$far side saw $far_calls calls ($invites INVITEs logged), want $want_far")
    if [ "$expect" != 200 ]; then
        local counts got retrans
        counts=$(find "$dir" -name '*_counts.csv' | head -n 1)
        got=$(column "$counts" "2_${expect}_Recv")
        retrans=$(column "$counts" "2_${expect}_Retrans")
        [ "$got" = "$calls" ] || problems+=("$got final $expect received, want $calls")
        [ "$retrans" = 0 ] ||
            problems+=("$retrans retransmitted $expect: the gateway did not take the ACK")
    fi
    if [ -n "$uri" ] && [ "$invites" != 0 ]; then
        local wrong
        wrong=$(grep '^INVITE ' "$dir/uas.log" | grep -cvxF "INVITE $uri" || true)
        [ "$wrong" = 0 ] ||
            problems+=("$wrong INVITEs reached $far with another Request-URI than $uri")
    fi
    delta=$(join <(echo "$before") <(echo "$after") |
        awk '$3 != $2 { printf "%s%s+%d", sep, $1, $3 - $2; sep = " " }')
    [ "$delta" = "$decision+$calls" ] ||
        problems+=("policy decisions grew by '$delta', want $decision+$calls")

    local verdict="got $expect" reached="$far_calls reached $far"
    [ "$expect" = 200 ] && verdict="answered (200)"
    [ "$invites" != 0 ] && reached="$reached as $(grep '^INVITE ' "$dir/uas.log" |
        cut -d' ' -f2 | sort -u | paste -sd' ')"
    echo "policy $name: $ok/$calls $verdict, $reached, decision $delta"
    if [ ${#problems[@]} != 0 ]; then
        failed=1
        printf '  FAILED: %s\n' "${problems[@]}" >&2
        tail -n 15 "$dir/uac.out" >&2 || true
        for f in "$dir"/uac.err "$dir"/uas.err; do
            if [ -s "$f" ]; then echo "--- $f" >&2; head -n 40 "$f" >&2; echo >&2; fi
        done
    fi
}

run_case "carrier->ms assigned" carrier 200 allowed "$assigned" "$pstn" "$(pai "$pstn")" "$sip_uri"
run_case "carrier->ms unassigned" carrier 404 unassigned_called "$unassigned_called" "$pstn" \
    "$(pai "$pstn")"
run_case "carrier->ms emergency 911" carrier 200 emergency 911 "$pstn" "$(pai "$pstn")" \
    "sip:911@127.0.0.1:5162;user=phone"
run_case "ms->carrier assigned, own tenant" microsoft 200 allowed "$pstn" "$assigned" \
    "$(pai "$assigned")$crlf$(tenant_of "$tenant")" "sip:$pstn@127.0.0.1:5166;user=phone"
run_case "ms->carrier assigned From (no PAI), own tenant" microsoft 200 allowed "$pstn" \
    "$assigned" "$(tenant_of "$tenant")" "sip:$pstn@127.0.0.1:5166;user=phone"
run_case "ms->carrier unassigned PAI (From assigned)" microsoft 403 unassigned_caller "$pstn" \
    "$assigned" "$(pai "$unassigned_caller")$crlf$(tenant_of "$tenant")"
run_case "ms->carrier unassigned From (no PAI)" microsoft 403 unassigned_caller "$pstn" \
    "$unassigned_caller" "$(tenant_of "$tenant")"
run_case "ms->carrier tenant mismatch" microsoft 403 tenant_mismatch "$pstn" "$assigned" \
    "$(pai "$assigned")$crlf$(tenant_of "$other_tenant")"
run_case "ms->carrier emergency 911 (caller unassigned)" microsoft 200 emergency 911 \
    "$unassigned_caller" "$(pai "$unassigned_caller")$crlf$(tenant_of "$other_tenant")" \
    "sip:911@127.0.0.1:5166;user=phone"
run_case "ms->carrier emergency +1911 (caller unassigned)" microsoft 200 emergency +1911 \
    "$unassigned_caller" "$(pai "$unassigned_caller")$crlf$(tenant_of "$other_tenant")" \
    "sip:+1911@127.0.0.1:5166;user=phone"

if ! kill -0 "$gw" 2>/dev/null; then
    echo "$tag: the gateway exited during the run" >&2
    failed=1
fi
if [ "$failed" != 0 ]; then
    echo "policy FAILED; logs in $work" >&2
    tail -n 30 "$work/gw.log" >&2 || true
    exit 1
fi
kill_pids # before removing the directory the gateway writes in
pids=()
echo "policy: $n cases passed, $calls calls each, in ${SECONDS}s"
rm -rf "$work"
