"""Torch's intra-op thread count, switched safely while several threads (the app's Gradio workers) use torch.

``torch.set_num_threads`` is process-wide state (OpenMP/MKL defaults shared by all threads, plus a per-thread
OpenMP setting), so the save-set-restore pattern ``prev = get(); set(1); ...; set(prev)`` races when two threads
run it at once: the second one saves the first one's 1 and "restores" it, leaving the process on one thread for
good. :func:`single_torch_thread` is the thread-safe version: reference-counted under a lock, the count to restore
is read once (before any switch), and it is restored only when the last holder leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_holders = 0
_restore_to: int | None = None  # the count before the first switch; read once, never from a switched state


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread (small CPU tensors: as fast, and immune to oversubscription).

    Re-entrant and thread-safe. Every holder sets 1 for its own thread; the last one to leave restores the original
    count. A nested plain save-set-restore inside the block (``msma.fit`` / ``msma.texture``) sees 1, sets 1 and
    restores 1: a no-op."""
    global _holders, _restore_to
    with _lock:
        if _restore_to is None:
            _restore_to = torch.get_num_threads()
        _holders += 1
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and torch.get_num_threads() != _restore_to:
                torch.set_num_threads(_restore_to)


def holders() -> int:
    """How many blocks are inside :func:`single_torch_thread` right now (for tests and logs)."""
    return _holders
