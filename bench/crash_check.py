#!/usr/bin/env python3
"""Checks a bench/crash.sh run: every call SIPp completed has exactly one answered record at
the emulator, none twice, and the uploaded durations match SIPp's own call lengths.

Waits (bounded) for the gateway to finish uploading: until its spool has nothing pending
and the emulator's count stops moving."""
import argparse, glob, json, subprocess, sys, time, urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def pending(binary, work):
    """Records in the gateway's spool not uploaded yet (`ocedge cdr status`)."""
    out = subprocess.run([binary, "cdr", "--spool", f"{work}/spool", "status"],
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("records:"):
            # "records:      N on disk, M pending upload"
            return int(line.split(",")[1].split()[0])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--killed", default="0")
    ap.add_argument("--settle", type=float, default=90.0)
    ap.add_argument("--export", help="the [cdr.export] directory: each record once, as uploaded")
    ap.add_argument("--max-diff", type=int, default=20,
                    help="largest p99 |record duration - SIPp call length| in ms (no-kill runs)")
    a = ap.parse_args()

    # SIPp's view: answer/bye/done ticks per Call-ID.
    calls = {}
    with open(f"{a.work}/uac.log", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("answer", "bye", "done"):
                calls.setdefault(parts[1], {})[parts[0]] = int(parts[2])
    completed = {c: t for c, t in calls.items() if "done" in t and "answer" in t}

    # Wait for the uploads to settle.
    deadline = time.time() + a.settle
    last = None
    stable = 0
    while time.time() < deadline:
        stats = get(f"{a.emulator}/emulator/stats")
        p = pending(a.bin, a.work)
        if p == 0 and last == stats.get("accepted"):
            stable += 1
            if stable >= 3:
                break
        else:
            stable = 0
        last = stats.get("accepted")
        time.sleep(1)
    stats = get(f"{a.emulator}/emulator/stats")
    records = get(f"{a.emulator}/emulator/call-durations")["value"]

    answered = {}
    for r in records:
        if r["disposition"] == "answered":
            answered.setdefault(r["callId"], []).append(r)
    twice = {c: rs for c, rs in answered.items() if len(rs) > 1}
    missing = sorted(set(completed) - set(answered))
    ids = [r["id"] for r in records]

    # Accuracy: calls whose BYE went through without a retransmission (done within 400 ms
    # of the bye: no crash in between).
    diffs = []
    for c, t in completed.items():
        rs = answered.get(c)
        if not rs or "bye" not in t or t["done"] - t["bye"] > 400:
            continue
        diffs.append(abs(rs[0]["durationMs"] - (t["bye"] - t["answer"])))
    diffs.sort()
    def pct(p):
        return diffs[min(len(diffs) - 1, int(len(diffs) * p))] if diffs else None

    # The carrier's export files: every line a record id, each uploaded record exactly once.
    exported = []
    if a.export:
        for path in sorted(glob.glob(f"{a.export}/cdr-*.jsonl")):
            with open(path) as f:
                exported += [json.loads(line)["id"] for line in f if line.strip()]

    report = {
        "sipp_completed": len(completed),
        "sipp_started": len(calls),
        "records": len(records),
        "answered_records": sum(len(v) for v in answered.values()),
        "failed_or_cancelled_records": len(records) - sum(len(v) for v in answered.values()),
        "missing": len(missing),
        "answered_twice": len(twice),
        "duplicate_ids": len(ids) - len(set(ids)),
        "emulator_stats": stats,
        "accuracy_calls": len(diffs),
        "duration_diff_ms_p50": pct(0.5),
        "duration_diff_ms_p99": pct(0.99),
        "duration_diff_ms_max": diffs[-1] if diffs else None,
        "killed_after_s": a.killed,
    }
    if a.export:
        report["exported_lines"] = len(exported)
        report["exported_twice"] = len(exported) - len(set(exported))
        report["uploaded_not_exported"] = len(set(ids) - set(exported))
        report["exported_not_uploaded"] = len(set(exported) - set(ids))
    print(json.dumps(report, indent=2))
    ok = True
    if not completed:
        print("crash: FAIL: SIPp completed no call", file=sys.stderr); ok = False
    if missing:
        print(f"crash: FAIL: {len(missing)} completed calls have no record, e.g. {missing[:3]}",
              file=sys.stderr); ok = False
    if twice:
        print(f"crash: FAIL: {len(twice)} calls answered twice, e.g. {list(twice)[:3]}",
              file=sys.stderr); ok = False
    if len(ids) != len(set(ids)):
        print("crash: FAIL: the emulator holds an id twice", file=sys.stderr); ok = False
    # Accuracy is judged on the run without a kill: a restart stalls the calls around it.
    if a.killed == "0" and diffs and pct(0.99) > a.max_diff:
        print(f"crash: FAIL: duration p99 differs by {pct(0.99)} ms (> {a.max_diff})", file=sys.stderr)
        ok = False
    if a.export and (report["exported_twice"] or report["uploaded_not_exported"]
                     or report["exported_not_uploaded"]):
        print("crash: FAIL: the export files do not hold each uploaded record exactly once",
              file=sys.stderr)
        ok = False
    if stats.get("accepted") != len(records):
        print("crash: FAIL: accepted count differs from distinct records", file=sys.stderr)
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
