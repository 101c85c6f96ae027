#!/usr/bin/env python3
"""Splits a `perf script -F comm,tid,ip,sym` dump of the gateway (call graphs on) three ways:
kernel against user time, the activity each sample belongs to (the outermost frame that
names one), and for kernel samples the system call they are in. Used by bench/profile.sh.

    python3 bench/perf_activity.py target/profile/script.txt
"""
import collections
import sys

# First match wins, tested against every frame of a sample's stack.
ACTIVITIES = [
    ("UDP receive path (parse, proxy, call timing, spool append, sends)", "udp::recv_loop"),
    ("stream connections (TCP/TLS)", "transport::stream"),
    ("proxy timers", "handle_timeout"),
    ("CDR uploader", "Uploader::run"),
    ("CDR export", "cdr::export"),
    ("spool group commit (fdatasync)", "spool::commit"),
    ("HTTP (hyper/reqwest)", "hyper"),
    ("number sync", "numbers::sync"),
    ("idle: runtime parking (epoll, futex)", "park"),
    ("runtime, other", "tokio::"),
]


def samples(path):
    cur = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif line[0] not in "\t ":
            cur = []
        elif cur is not None:
            parts = line.strip().split(" ", 1)
            cur.append((parts[0], parts[1] if len(parts) > 1 else "?"))
    if cur:
        yield cur


def kernel_part(names):
    """The system call a kernel sample is in, or what else the kernel was doing."""
    for prefix in ("__x64_sys_", "__do_sys_", "ksys_"):
        call = next((n for n in names if n.startswith(prefix)), None)
        if call:
            return call[len(prefix):].split(" ")[0]
    if any("page_fault" in n for n in names):
        return "(page faults)"
    if any("irq" in n for n in names):
        return "(interrupts)"
    if any("schedule" in n for n in names):
        return "(scheduling)"
    return "(other)"


def main():
    all_samples = list(samples(sys.argv[1]))
    total = len(all_samples)
    if not total:
        sys.exit("no samples")
    kernel = 0
    activity = collections.Counter()
    syscall = collections.Counter()
    for s in all_samples:
        names = [n for _, n in s]
        if s[0][0].startswith("ffffffff"):
            kernel += 1
            syscall[kernel_part(names)] += 1
        name = next((a for a, pat in ACTIVITIES if any(pat in n for n in names)), "other")
        activity[name] += 1
    print(f"{total} samples; kernel {100 * kernel / total:.1f}%, user {100 * (total - kernel) / total:.1f}%")
    print("by activity:")
    for name, n in activity.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("kernel time by system call (share of all samples):")
    for name, n in syscall.most_common(10):
        print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
