"""msma.app.startup: the page is built before the models load; handlers wait for them; the status says what is
happening. Plus the download names. No model is loaded here (a fake loader stands in)."""

from __future__ import annotations

import threading
import time

import pytest

from msma import app as H
from msma.api import DEFAULT_METHOD
from msma.app.startup import BackgroundModels, planned_methods


class FakeModels:
    default = "fitting"
    max_side = 512

    def choices(self):
        return [("fitting (no network)", "fitting")]

    def describe(self):
        return {"face_model": "ict", "methods": "fitting (no network)", "device": "cpu"}

    def engine(self, key):
        return f"engine {key}"

    def warmup(self, image=None):
        return 0.0

    @property
    def base(self):
        return "the base reconstructor"


def test_page_first_models_later() -> None:
    gate = threading.Event()

    def load():
        gate.wait(10)
        return FakeModels()

    models = BackgroundModels(load, ["network", "network+refine", "fitting"], "fitting", max_side=512,
                              warmup=False).start()
    assert not models.ready and "⏳" in models.status_markdown()
    assert [k for _, k in models.choices()] == ["network", "network+refine", "fitting"]  # the menu, unloaded
    assert models.max_side == 512 and "loading" in models.describe()["device"]
    with pytest.raises(H.AppError, match="still loading"):
        models.wait(timeout=0.05)
    gate.set()
    assert models.engine("fitting") == "engine fitting" and models.base == "the base reconstructor"
    deadline = time.monotonic() + 5
    while "⏳" in models.status_markdown() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert models.ready and "Face model **ict**" in models.status_markdown()
    assert [k for _, k in models.choices()] == ["fitting"]  # what actually loaded


def test_a_failed_load_is_shown_and_raised() -> None:
    def load():
        raise FileNotFoundError("no face model")

    models = BackgroundModels(load, ["fitting"], "fitting", max_side=512, warmup=False).start()
    with pytest.raises(H.AppError, match="could not be loaded"):
        models.engine(None)
    assert "⛔" in models.status_markdown() and "no face model" in models.status_markdown()


def test_planned_methods_follow_the_weight_files(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MSMA_WEIGHTS", raising=False)
    monkeypatch.delenv("MSMA_WEIGHTS_REPO", raising=False)
    monkeypatch.delenv("MSMA_ABLATION_WEIGHTS", raising=False)
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"x")
    methods, default = planned_methods(weights=w, ablation_weights=w)
    assert methods == ["network", "network+refine", "fitting", "ablation"] and default == DEFAULT_METHOD
    import msma.defaults

    monkeypatch.setattr(msma.defaults, "REPO_WEIGHTS_DIR", tmp_path / "none")
    monkeypatch.setattr("msma.app.startup.ABLATION_WEIGHTS_NAME", "none.safetensors")
    methods, default = planned_methods()
    assert methods == ["fitting"] and default == "fitting"


def test_download_names() -> None:
    assert H.file_stem("My photo (2).JPG") == "My_photo_2"
    assert H.file_stem("../../etc/passwd") == "passwd" and H.file_stem("") == "face" and H.file_stem("...") == "face"
    assert len(H.file_stem("x" * 500 + ".png")) == 60
