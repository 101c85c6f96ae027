#!/usr/bin/env bash
# The Kamailio compare (../shared/bench/sipload.py compare) with the gateway as carriers run
# it: everything on (number policy, call timing, spool, uploader, exporter) and the
# Microsoft API served by the emulator in its own process (bench/crash.toml), as Microsoft's
# is in production. Only the gateway's own CPU is then counted against Kamailio's.
# bench/gateway.toml, the other way to run the same compare, embeds the emulator and so
# counts the API server's CPU as the gateway's too.
#
#   bash bench/compare.sh [sipload.py compare options]
#   bash bench/compare.sh --rate 1000 --calls 20000 --rounds 3
#
# Needs a release build (OCEDGE_BIN, default target/release/ocedge), sipp and kamailio.
# Runs from the repository root; loopback only; stops when sipload.py does.
set -euo pipefail
tag=compare
OCEDGE_BIN=${OCEDGE_BIN:-target/release/ocedge}
source bench/common.sh
rm -rf target/crash
mkdir -p target/compare
export OCEDGE_API_SECRET=compare
start_emulator target/compare/emulator.log
python3 "$shared/bench/sipload.py" compare --gateway-cmd "$bin run --config bench/crash.toml" \
    --gateway-port 5062 "$@"
