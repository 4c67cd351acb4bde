"""Peak resident memory of a command and all its descendants together, sampled from /proc.

    python3 tools/peak_rss.py [--interval 0.02] -- COMMAND [ARG]...

`/usr/bin/time -v` reports the largest single process, which undercounts a loader with worker
processes (PyTorch's DataLoader): this sums VmRSS over the whole process tree at each sample and
prints the largest sum (MB, 10^6 bytes) and the wall time; the command's exit status is kept.
Linux only.
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


def rss_kb(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass  # the process ended between the listing and the read
    return 0


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
    peak = 0
    while process.poll() is None:
        peak = max(peak, sum(rss_kb(pid) for pid in tree(process.pid)))
        time.sleep(args.interval)
    print(f"peak RSS {peak * 1024 / 1e6:.0f} MB (process tree, sampled every {args.interval}s), "
          f"wall {time.monotonic() - start:.1f} s, exit {process.returncode}", file=sys.stderr)
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
