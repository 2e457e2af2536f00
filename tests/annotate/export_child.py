"""Run `python -m annotate export` in a child process with a fault injected (used by test_annotate_export_faults).

    python export_child.py STORE OUT FORMAT count          # print how many files the export opens / renames
    python export_child.py STORE OUT FORMAT open:K         # SIGKILL right after the K-th file opened for writing
    python export_child.py STORE OUT FORMAT rename:K       # SIGKILL right before the K-th rename
    python export_child.py STORE OUT FORMAT fsize:BYTES    # "disk full": no file may grow past BYTES (RLIMIT_FSIZE)
    python export_child.py STORE OUT FORMAT crash:BYTES    # killed by the kernel (SIGXFSZ) in the middle of a write
                                                           # that crosses BYTES: the file is cut exactly there

The faults are injected below the code under test (an audit hook on every open / rename, a kernel file-size
limit), so they hit whatever way the exporter writes.
"""

from __future__ import annotations

import os
import resource
import signal
import sys


def main() -> int:
    store, out, fmt, mode = sys.argv[1:5]
    out_prefix = os.path.abspath(out) + os.sep
    kind, _, arg = mode.partition(":")
    counts = {"open": 0, "rename": 0}

    def writing(args: tuple) -> bool:
        path, mode_, flags = (list(args) + [None, None, None])[:3]
        if not isinstance(path, (str, bytes)) or not os.path.abspath(os.fsdecode(path)).startswith(out_prefix):
            return False
        if isinstance(mode_, str):
            return any(c in mode_ for c in "wxa+")
        return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    def hook(event: str, args: tuple) -> None:
        if event == "open" and writing(args):
            counts["open"] += 1
            if kind == "open" and counts["open"] == int(arg):
                os.kill(os.getpid(), signal.SIGKILL)
        elif event == "os.rename" and isinstance(args[1], (str, bytes)) and \
                os.path.abspath(os.fsdecode(args[1])).startswith(out_prefix):
            counts["rename"] += 1
            if kind == "rename" and counts["rename"] == int(arg):
                os.kill(os.getpid(), signal.SIGKILL)

    from annotate.cli import main as cli
    from annotate.store import Store

    keep = Store(store, enforce_roles=False)  # noqa: F841 - database files (WAL, shm) exist before any limit
    if kind in ("fsize", "crash"):
        # Python ignores SIGXFSZ from start-up (writes past the limit fail with EFBIG: "disk full"); the default
        # action kills the process in the middle of the write that crosses the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN if kind == "fsize" else signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    sys.addaudithook(hook)
    rc = cli(["export", "-d", store, "-f", fmt, "-o", out, "--status", "all"])  # the fixture images are todo
    if kind == "count":
        print(f"{counts['open']} {counts['rename']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
