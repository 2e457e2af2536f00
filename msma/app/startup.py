"""Serve the app's page at once and load the models behind it in a background thread.

``python app.py`` used to load the face model, the network weights and run a warm-up reconstruction before the
server answered (~15-30 s). :class:`BackgroundModels` stands in for :class:`msma.app.state.AppModels`: the menu
(methods, default) is known from the files alone, so the page is built and served immediately; a handler that needs
the models waits for them; :meth:`BackgroundModels.status_markdown` tells the visitor what is happening.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from msma.app.state import ABLATION_WEIGHTS_ENV, ABLATION_WEIGHTS_NAME, METHOD_LABELS, AppError, AppModels

log = logging.getLogger(__name__)

LOAD_WAIT_S = 300.0  # a request arriving during start-up waits this long for the models at most


def planned_methods(weights: str | os.PathLike | None = None,
                    ablation_weights: str | os.PathLike | None = None) -> tuple[list[str], str]:
    """(method keys, default key) that :meth:`AppModels.load` will offer, from the weight files alone (nothing
    loaded, nothing downloaded). The default is ``msma.api.DEFAULT_METHOD`` (msma.defaults) when it is offered."""
    from msma import defaults as d  # not msma.api: that imports torch, seconds of start-up
    from msma.assets import resolve_local_file

    try:
        network = resolve_local_file(weights, d.WEIGHTS_ENV, d.REPO_WEIGHTS_DIR / d.DEFAULT_WEIGHTS_NAME,
                                     "network weights") is not None or bool(os.environ.get(d.WEIGHTS_REPO_ENV))
    except FileNotFoundError:  # an explicit path that does not exist: AppModels.load reports it
        network = True
    methods = ["network", "network+refine", "fitting"] if network else ["fitting"]
    ablation = ablation_weights or os.environ.get(ABLATION_WEIGHTS_ENV)
    if ablation or (d.REPO_WEIGHTS_DIR / ABLATION_WEIGHTS_NAME).is_file():
        methods.append("ablation")
    default = d.DEFAULT_METHOD if d.DEFAULT_METHOD in methods else "fitting"
    return methods, default


class BackgroundModels:
    """:class:`AppModels` loaded (and warmed up) in a thread; attribute access waits until they are loaded."""

    def __init__(self, load: Callable[[], AppModels], methods: list[str], default: str, *, max_side: int,
                 warmup: bool = True, wait_s: float = LOAD_WAIT_S) -> None:
        self._load, self._warm, self._wait_s = load, warmup, wait_s
        self.planned, self.default, self.max_side = list(methods), default, int(max_side)
        self._models: AppModels | None = None
        self._error: BaseException | None = None
        self._loaded = threading.Event()
        self._phase = "loading the face model and the network weights"
        self._t0 = time.monotonic()
        self.load_seconds: float | None = None
        self.warmup_seconds: float | None = None
        self._thread = threading.Thread(target=self._run, name="msma-model-loader", daemon=True)

    def start(self) -> BackgroundModels:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            models = self._load()
            self.load_seconds = time.monotonic() - self._t0
            self.default = models.default
            self._models = models
            log.info("models loaded in %.1f s", self.load_seconds)
            for key, value in models.describe().items():
                log.info("%-16s %s", key, value)
        except BaseException as exc:  # noqa: BLE001 - shown on the page and raised to every handler
            log.exception("loading the models failed")
            self._error = exc
            self._loaded.set()
            return
        self._phase = "warming up (the first reconstruction may be slower)" if self._warm else ""
        self._loaded.set()
        if self._warm:
            self.warmup_seconds = models.warmup()
            log.info("warm-up reconstruction: %.1f s", self.warmup_seconds)
        self._phase = ""

    # ------------------------------------------------------------------ what the page shows before loading
    def choices(self) -> list[tuple[str, str]]:
        if self._models is not None:
            return self._models.choices()
        return [(METHOD_LABELS[m], m) for m in self.planned]

    def describe(self) -> dict[str, str]:
        if self._models is not None:
            return self._models.describe()
        return {"face_model": "ICT-FaceKit (loading)", "methods": ", ".join(METHOD_LABELS[m] for m in self.planned),
                "device": "loading…"}

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._error is None

    def status_markdown(self) -> str:
        if self._error is not None:
            return (f"⛔ the models could not be loaded ({type(self._error).__name__}: {self._error}); "
                    "see the server log")
        if self._models is None:
            return f"⏳ {self._phase}… ({time.monotonic() - self._t0:.0f} s); you can upload a photo meanwhile"
        info = self._models.describe()
        text = f"Face model **{info['face_model']}** · methods: {info['methods']} · device `{info['device']}`"
        return text + (f" · ⏳ {self._phase}" if self._phase else "")

    # ------------------------------------------------------------------ everything else needs the models
    def wait(self, timeout: float | None = None) -> AppModels:
        if not self._loaded.wait(self._wait_s if timeout is None else timeout):
            raise AppError("The models are still loading; please try again in a few seconds.")
        if self._error is not None or self._models is None:
            raise AppError("The reconstruction models could not be loaded on this server (see its log).")
        return self._models

    def engine(self, key: str | None):
        return self.wait().engine(key)

    def warmup(self, image: Any = None) -> float:
        return self.wait().warmup(image)

    def __getattr__(self, name: str) -> Any:  # base, model, engines, gpu, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.wait(), name)
