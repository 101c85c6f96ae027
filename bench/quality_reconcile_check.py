#!/usr/bin/env python3
"""Checks a bench/quality_reconcile.sh run: every SBC report in the quality files once, and
`ocedge reconcile` finding exactly the discrepancies injected into Microsoft's records."""
import argparse, glob, json, subprocess, sys, time, urllib.request

from crash_check import pending
from datetime import datetime, timedelta, timezone


def call(url, body=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def fail(msg):
    print(f"qr: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    for a in ("--work", "--bin", "--emulator", "--from"):
        ap.add_argument(a, required=True)
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--reports", type=int, required=True)
    a = ap.parse_args()
    emu = a.emulator

    completed = []
    with open(f"{a.work}/uac.log", errors="replace") as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[0] == "done":
                completed.append(p[1])
    if len(completed) != a.calls:
        fail(f"SIPp completed {len(completed)} of {a.calls} calls")

    # Uploads done: nothing pending in the spool, every call accepted.
    deadline = time.time() + 60
    while time.time() < deadline:
        if pending(a.bin, a.work) == 0 and call(f"{emu}/emulator/stats")["accepted"] >= a.calls:
            break
        time.sleep(0.5)
    else:
        fail("uploads did not finish within 60 s")

    # Quality: each report once in the JSONL files.
    samples = []
    for path in glob.glob(f"{a.work}/quality/*.jsonl"):
        with open(path) as f:
            samples += [json.loads(l) for l in f if l.strip()]
    sbc = [s for s in samples if s["source"] == "sbc"]
    ids = {s["callId"] for s in sbc}
    if len(sbc) != a.reports or len(ids) != a.reports:
        fail(f"{len(sbc)} SBC samples, {len(ids)} distinct, for {a.reports} reports")
    if not all(s["trunk"] == "sbc1" and s["mosLq"] == 4.1 and s["jitterMs"] == 12 for s in sbc):
        fail(f"unexpected sample values: {sbc[0]}")

    # Known discrepancies in Microsoft's records.
    completed.sort()
    drifted, dropped = completed[:3], completed[3:5]
    now = datetime.now(timezone.utc)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    extra = {"callId": "extra-qr@emulator", "callerNumber": "+13125550000",
             "calleeNumber": "+14255510000", "startDateTime": iso(now - timedelta(seconds=50)),
             "endDateTime": iso(now - timedelta(seconds=20))}
    call(f"{emu}/emulator/discrepancies", {"driftByCallId": {c: 5000 for c in drifted},
                                           "dropCallIds": dropped, "extraRecords": [extra]})

    to = iso(now + timedelta(seconds=1))
    out = subprocess.run([a.bin, "reconcile", "--config", f"{a.work}/gateway.toml", "--from",
                          a.__dict__["from"], "--to", to, "--format", "json", "--source", "api"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"ocedge reconcile exited {out.returncode}: {out.stderr}")
    try:
        summary = json.loads(out.stdout)
    except ValueError:
        fail(f"not JSON: {out.stdout[:500]}")
    counts = summary.get("counts", {})
    findings = summary.get("findings", [])
    by = lambda cls: sorted(f["callId"] for f in findings if f["class"] == cls)
    report = {"calls": a.calls, "reports": a.reports, "counts": counts,
              "complete": summary.get("complete")}
    print(json.dumps(report, indent=2))
    want = {"matched": a.calls - 5, "durationMismatch": 3, "missingOurs": 1,
            "missingMicrosoft": 2, "notBillable": 0}
    got = {k: counts.get(k) for k in want}
    if got != want or summary.get("complete") is not True:
        fail(f"counts {got} (complete={summary.get('complete')}), want {want}")
    if by("durationMismatch") != sorted(drifted) or by("missingMicrosoft") != sorted(dropped) \
            or by("missingOurs") != ["extra-qr@emulator"]:
        fail(f"findings differ from the injected ones: {findings}")
    print("qr: ok: every report once in the sinks; reconciliation found exactly the injected "
          "discrepancies")


main()
