"""One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for per-frame tracking signals, vectorised over channels.

A first-order low-pass whose cutoff rises with the signal's speed: ``cutoff = min_cutoff + beta * |dx/dt|``. Still
signals are smoothed hard (jitter removed), fast motion passes with little lag. It is causal, so it works live.

Lag: at rest the filter is an exponential moving average with time constant ``tau = 1 / (2 pi min_cutoff)``
(`rest_lag_s`): 0.16 s for min_cutoff = 1 Hz. During motion the cutoff is higher and the lag shorter
(``1 / (2 pi (min_cutoff + beta |speed|))``). `benchmarks/tracking.py` measures the lag on synthetic curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OneEuroFilter", "OneEuroSettings", "smooth_series"]


@dataclass
class OneEuroSettings:
    min_cutoff: float = 1.0  # Hz: cutoff for a still signal (lower = smoother, more lag)
    beta: float = 1.0  # cutoff gain per unit of speed (units of the signal per second)
    d_cutoff: float = 1.0  # Hz: low-pass on the speed estimate

    @property
    def rest_lag_s(self) -> float:
        """Time constant of the filter on a still signal, seconds."""
        return 1.0 / (2.0 * math.pi * self.min_cutoff)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filter a stream of (C,) vectors with timestamps; `reset` forgets the state (e.g. after the face is lost)."""

    def __init__(self, settings: OneEuroSettings | None = None) -> None:
        self.settings = settings or OneEuroSettings()
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        s = self.settings
        dt = float(t) - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(s.d_cutoff, dt) * (dx - self._dx)
        cutoff = s.min_cutoff + s.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()


def smooth_series(values: np.ndarray, times: np.ndarray, settings: OneEuroSettings | None = None,
                  segments: np.ndarray | None = None) -> np.ndarray:
    """Filter a (T, C) series sampled at ``times``; the filter restarts where ``segments`` (T,) int changes."""
    values = np.asarray(values, np.float64)
    out = np.empty_like(values)
    flt = OneEuroFilter(settings)
    previous = None
    for i, (x, t) in enumerate(zip(values, times)):
        if segments is not None and segments[i] != previous:
            flt.reset()
            previous = segments[i]
        out[i] = flt(x, float(t))
    return out
