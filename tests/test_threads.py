"""msma.threads.single_torch_thread: safe when Gradio worker threads enter and leave it in any order."""

from __future__ import annotations

import random
import threading
import time

import torch

from msma.fit import single_torch_thread as fit_switch
from msma.threads import holders, single_torch_thread


def _fresh_thread_count() -> int:
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_overlapping_holders_restore_the_original_count() -> None:
    """A enters, B enters, A leaves, B leaves: the schedule that left the naive save/set/restore stuck at 1."""
    original = _fresh_thread_count()
    step = [threading.Event() for _ in range(3)]
    inside: dict[str, int] = {}

    def a() -> None:
        with single_torch_thread():
            inside["a"] = torch.get_num_threads()
            step[0].set()
            step[1].wait(10)
        step[2].set()

    def b() -> None:
        step[0].wait(10)
        with single_torch_thread():
            step[1].set()
            step[2].wait(10)
            inside["b_after_a_left"] = torch.get_num_threads()
            with fit_switch():  # the fitter's own switch nested inside: must change nothing
                inside["nested"] = torch.get_num_threads()
            inside["b_after_nested"] = torch.get_num_threads()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert inside == {"a": 1, "b_after_a_left": 1, "nested": 1, "b_after_nested": 1}
    assert holders() == 0
    assert _fresh_thread_count() == original


def test_many_threads_random_order() -> None:
    original = _fresh_thread_count()
    wrong: list[int] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20):
            with single_torch_thread():
                time.sleep(rng.random() * 0.002)
                if torch.get_num_threads() != 1:
                    wrong.append(torch.get_num_threads())
            time.sleep(rng.random() * 0.001)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not wrong and holders() == 0
    assert _fresh_thread_count() == original
