"""Password login for the Gradio apps (``python -m annotate serve``, ``app.py``), throttled against guessing.

Gradio calls ``auth(username, password)`` on every login form post and gives it nothing else (no client address),
so the throttle is per user name: after :data:`FREE_FAILURES` consecutive wrong passwords a name is locked, for a
delay that doubles with each further failure (capped), and attempts while it is locked are refused without even
checking the password. Every refusal also waits :data:`FAILURE_DELAY_S` before answering; the wait is an
``asyncio`` sleep, so the server keeps serving everyone else meanwhile.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MIN_PASSWORD_LENGTH = 8
FREE_FAILURES = 5  # wrong passwords allowed before a user name is locked
LOCK_BASE_S = 30.0  # first lock; doubles with every further failure
LOCK_MAX_S = 15 * 60.0
FAILURE_DELAY_S = 1.0
MAX_TRACKED = 10_000  # user names remembered (oldest forgotten first), so made-up names cannot fill memory


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Wraps ``check(username, password) -> bool``; pass :meth:`check` (a coroutine function) as ``auth=``.

    Gradio awaits ``auth`` only when ``inspect.iscoroutinefunction`` says so, which is true for the bound method
    :meth:`check` but not for an instance with an async ``__call__`` (that would hand Gradio a truthy coroutine
    and let every password in), hence no ``__call__`` here."""

    def __init__(self, check: Callable[[str, str], bool], *, free_failures: int = FREE_FAILURES,
                 lock_base_s: float = LOCK_BASE_S, lock_max_s: float = LOCK_MAX_S,
                 failure_delay_s: float = FAILURE_DELAY_S, clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = MAX_TRACKED) -> None:
        self._check = check
        self.free_failures, self.lock_base_s, self.lock_max_s = free_failures, lock_base_s, lock_max_s
        self.failure_delay_s, self.clock, self.max_tracked = failure_delay_s, clock, max_tracked
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def locked(self, username: str) -> bool:
        with self._lock:
            entry = self._failures.get(username)
            return entry is not None and entry.locked_until > self.clock()

    def attempt(self, username: str, password: str) -> bool:
        """The decision without the answer delay (what :meth:`check` runs in a worker thread)."""
        if self.locked(username):
            return False
        ok = bool(self._check(username, password))
        with self._lock:
            if ok:
                self._failures.pop(username, None)
                return True
            entry = self._failures.pop(username, None) or _Failures()
            entry.count += 1
            if entry.count >= self.free_failures:
                extra = entry.count - self.free_failures
                entry.locked_until = self.clock() + min(self.lock_max_s, self.lock_base_s * 2.0 ** min(extra, 30))
            self._failures[username] = entry
            while len(self._failures) > self.max_tracked:
                self._failures.popitem(last=False)
        return False

    async def check(self, username: str, password: str) -> bool:
        ok = await asyncio.to_thread(self.attempt, username, password)  # password hashing off the event loop
        if not ok and self.failure_delay_s > 0:
            await asyncio.sleep(self.failure_delay_s)
        return ok


def password_check(pairs: Mapping[str, str]) -> Callable[[str, str], bool]:
    """``check`` for fixed USER:PASSWORD pairs (app.py --auth), compared in constant time."""
    known = {user: password.encode() for user, password in pairs.items()}

    def check(username: str, password: str) -> bool:
        expected = known.get(username)
        given = password.encode()
        if expected is None:
            hmac.compare_digest(given, given)
            return False
        return hmac.compare_digest(given, expected)

    return check
