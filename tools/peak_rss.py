"""Peak memory of a command and all its descendants together, sampled from /proc.

    python3 tools/peak_rss.py [--interval 0.02] -- COMMAND [ARG]...

`/usr/bin/time -v` reports the largest single process, which undercounts a loader with worker
processes (PyTorch's DataLoader). This sums over the whole process tree at each sample, and
prints the largest sums (MB, 10^6 bytes) and the wall time; the command's exit status is kept.
Two sums: RSS, which counts pages that forked workers share with their parent once per process,
and PSS (proportional set size), which splits each shared page among its sharers, so the PSS sum
is the memory the tree really holds. Linux only.
"""
import argparse
import pathlib
import subprocess
import sys
import time


def tree(pid):
    """pid and its descendants, from /proc/PID/task/*/children."""
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        pids.append(current)
        for task in pathlib.Path(f"/proc/{current}/task").glob("*"):
            try:
                stack.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass  # the task ended between the listing and the read
    return pids


def memory_kb(pid):
    """(RSS, PSS) of one process in kB, zeros once it has ended."""
    values = {}
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0])
    except OSError:
        pass  # the process ended between the listing and the read
    return values.get("Rss", 0), values.get("Pss", 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    start = time.monotonic()
    process = subprocess.Popen(command)
    peak_rss = peak_pss = 0
    while process.poll() is None:
        samples = [memory_kb(pid) for pid in tree(process.pid)]
        peak_rss = max(peak_rss, sum(rss for rss, _ in samples))
        peak_pss = max(peak_pss, sum(pss for _, pss in samples))
        time.sleep(args.interval)
    print(f"peak PSS {peak_pss * 1024 / 1e6:.0f} MB, peak RSS {peak_rss * 1024 / 1e6:.0f} MB "
          f"(process tree, sampled every {args.interval}s), wall {time.monotonic() - start:.1f} s, "
          f"exit {process.returncode}", file=sys.stderr)
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
