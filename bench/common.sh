# Shared by the bench scripts (sourced from the repository root, with `tag` set for
# messages): the ocedge binary and ../shared as absolute paths, SIPp present, background
# processes (`pids`) killed on exit, and `wait_port PROTO PORT` for a loopback listener
# (`wait_tries` polls 0.1 s apart, default 150), and `start_emulator LOG`: the API emulator
# as its own process on 127.0.0.1:8089 (the address of bench/crash.toml), seeded with the
# numbers SIPp calls.
# Environment: OCEDGE_BIN (default target/debug/ocedge), OCEDGE_SHARED (default ../shared).
bin=${OCEDGE_BIN:-target/debug/ocedge}
shared=${OCEDGE_SHARED:-../shared}
[ -d "$shared/bench" ] || shared=/work/shared
shared=$(cd "$shared" && pwd)
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
command -v sipp >/dev/null || { echo "$tag: sipp missing (apt-get install sip-tester)" >&2; exit 2; }

pids=()
kill_pids() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
cleanup() { kill_pids; }
trap cleanup EXIT

wait_port() { # proto port
    for _ in $(seq 1 "${wait_tries:-150}"); do
        if [ "$1" = udp ]; then ss -lun | grep -q "127.0.0.1:$2 " && return 0
        else ss -ltn | grep -q "127.0.0.1:$2 " && return 0; fi
        sleep 0.1
    done
    echo "$tag: nothing listens on $1 port $2" >&2
    return 1
}

start_emulator() { # log
    "$bin" emulator --listen 127.0.0.1:8089 --seed-csv "$shared/bench/assigned_numbers.csv" >"$1" 2>&1 &
    pids+=($!)
    wait_port tcp 8089
}
