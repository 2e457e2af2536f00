"""Pre-labelling: propose 68 points per face with a confidence, so labelers correct instead of clicking 68 times.

A pre-labeller is any callable ``image (H, W, 3) uint8 RGB -> list[PrelabelFace]`` with a ``name`` attribute.
Built in:

* ``detector`` / ``detector:<name>``: the project's offline detectors (``msma.landmarks.detect_faces``), confidence
  = detector score; ``detector:auto+check`` also runs a second detector and lowers the confidence by how much the two
  disagree (NME), which ranks hard images much better than a single score.
* ``reconstruction``: the reconstruction model's reprojected 68 landmarks (``msma.api.Reconstructor``, when
  installed with weights).
* ``module.path:function``: anything else, e.g. your own model; the function gets the image and returns
  ``FaceLandmarks``-like objects (``landmarks68``, optional ``box`` / ``score``), dicts or (68, 2) arrays.

Queue order uses the per-image confidence (the lowest face confidence; 0 when no face was found), worst first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotate.skeleton import N_POINTS, OUTSIDE, VISIBLE
from msma.landmarks.base import iou
from msma.landmarks.metrics import nme


@dataclass
class PrelabelFace:
    points: np.ndarray  # (68, 2) photo pixels
    confidence: float  # [0, 1], higher is more trustworthy
    box: np.ndarray | None = None
    visibility: np.ndarray | None = None  # default: visible inside the image, outside beyond it


class Prelabeller:
    """Base class; subclasses set ``name`` and implement ``predict``."""

    name = "prelabeller"

    def predict(self, image: np.ndarray) -> list[PrelabelFace]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> list[PrelabelFace]:
        return self.predict(image)


def _as_face(obj: Any, default_confidence: float = 0.5) -> PrelabelFace:
    if isinstance(obj, PrelabelFace):
        return obj
    if isinstance(obj, dict):
        pts = obj.get("landmarks68", obj.get("landmarks", obj.get("points")))
        return PrelabelFace(np.asarray(pts, np.float64), float(obj.get("score", obj.get("confidence",
                                                                                        default_confidence))),
                            None if obj.get("box") is None else np.asarray(obj["box"], np.float64))
    if hasattr(obj, "landmarks68") or hasattr(obj, "landmarks"):
        pts = getattr(obj, "landmarks68", None)
        pts = getattr(obj, "landmarks", None) if pts is None else pts
        box = getattr(obj, "box", None)
        score = getattr(obj, "score", getattr(obj, "confidence", default_confidence))
        return PrelabelFace(np.asarray(pts, np.float64), float(score if score is not None else default_confidence),
                            None if box is None else np.asarray(box, np.float64))
    return PrelabelFace(np.asarray(obj, np.float64), default_confidence)


class CallablePrelabeller(Prelabeller):
    """Wrap ``fn(image) -> iterable of faces`` (FaceLandmarks-like objects, dicts or (68, 2) arrays)."""

    def __init__(self, fn: Callable[[np.ndarray], Iterable[Any]], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")

    def predict(self, image: np.ndarray) -> list[PrelabelFace]:
        result = self.fn(image)
        if result is None:
            return []
        if isinstance(result, np.ndarray) and result.shape == (N_POINTS, 2):
            result = [result]
        return [_as_face(r) for r in result]


class DetectorPrelabeller(Prelabeller):
    """``msma.landmarks.detect_faces``; with ``check`` set, a second detector cross-checks the points."""

    def __init__(self, detector: str = "auto", check: str | None = None, min_score: float = 0.0):
        self.detector, self.check, self.min_score = detector, check, min_score
        self.name = f"detector:{detector}" + (f"+{check}" if check else "")

    def predict(self, image: np.ndarray) -> list[PrelabelFace]:
        from msma.landmarks import detect_faces  # lazy: heavy models load on first use only

        faces = [f for f in detect_faces(image, detector=self.detector) if f.score >= self.min_score]
        out = [PrelabelFace(np.asarray(f.landmarks68, np.float64), float(f.score),
                            np.asarray(f.box, np.float64)) for f in faces]
        if self.check and out:
            others = detect_faces(image, detector=self.check)
            for face in out:
                best = max(others, key=lambda o: iou(face.box, o.box), default=None)
                if best is None or iou(face.box, best.box) < 0.3:
                    face.confidence *= 0.5  # the second detector does not even see this face
                else:
                    err = nme(best.landmarks68, face.points)  # normalised by this face's eyes
                    face.confidence *= float(np.exp(-err / 0.08))
        return out


class ReconstructionPrelabeller(Prelabeller):
    """Reprojected 68 landmarks of the MSMA reconstruction (``msma.api.Reconstructor``)."""

    name = "reconstruction"

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        self._model = None

    def predict(self, image: np.ndarray) -> list[PrelabelFace]:
        from msma.landmarks import NoFaceError

        if self._model is None:
            from msma.api import Reconstructor

            # Landmark fitting only: the reprojection is what pre-labels need, photometric detail is not.
            self._model = Reconstructor(**{"photometric": False, **self.kwargs})
        try:
            result = self._model(image, texture=False)
        except NoFaceError:
            return []
        faces = []
        for face in result:
            # Confidence: agreement between the detector and the fitted model (NME over the outer eye corners).
            disagreement = nme(face.fitted_landmarks, face.detected_landmarks)
            faces.append(PrelabelFace(face.fitted_landmarks, float(np.exp(-10.0 * disagreement))))
        return faces


def get_prelabeller(spec: str | Prelabeller | Callable | None) -> Prelabeller | None:
    """'none' | 'detector[:name[+check]]' | 'reconstruction' | 'package.module:function' | a callable."""
    if spec is None or isinstance(spec, Prelabeller):
        return spec
    if callable(spec):
        return CallablePrelabeller(spec)
    spec = str(spec).strip()
    if spec in ("", "none"):
        return None
    head, _, arg = spec.partition(":")
    if head == "detector":
        detector, _, check = (arg or "auto").partition("+")
        return DetectorPrelabeller(detector or "auto", check or None)
    if head == "reconstruction":
        return ReconstructionPrelabeller()
    if arg:
        module = importlib.import_module(head)
        fn = getattr(module, arg)
        obj = fn() if isinstance(fn, type) else fn
        return obj if isinstance(obj, Prelabeller) else CallablePrelabeller(obj, name=spec)
    raise ValueError(f"unknown pre-labeller {spec!r}; use none, detector[:name], reconstruction or module:function")


def finalize_face(face: PrelabelFace, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and visibility ready for ``Store.save``: points beyond the image are flagged outside."""
    pts = np.asarray(face.points, np.float64).reshape(N_POINTS, 2)
    if face.visibility is not None:
        vis = np.asarray(face.visibility, np.int8)
    else:
        vis = np.full(N_POINTS, VISIBLE, np.int8)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(pts).all(1) & (pts[:, 0] >= 0) & (pts[:, 0] <= width) & (pts[:, 1] >= 0) & (
            pts[:, 1] <= height)
    vis = np.where(inside, vis, OUTSIDE).astype(np.int8)
    return pts, vis


def image_confidence(faces: Sequence[PrelabelFace]) -> float:
    return float(min((f.confidence for f in faces), default=0.0))


def prelabel_image(store: Any, image_id: int, image: np.ndarray, prelabeller: Prelabeller,
                   scale_to_original: Callable[[np.ndarray], np.ndarray] | None = None) -> int:
    """Run ``prelabeller`` and store its faces as revisions by user ``model:<name>`` (only on images with no
    faces yet, so a labeler's work is never replaced). Returns the number of faces stored."""
    rec = store.get_image(image_id)
    if store.get_annotations(image_id, include_deleted=True):
        return 0
    faces = prelabeller(image)
    for k, face in enumerate(faces):
        if scale_to_original is not None:
            face.points = scale_to_original(face.points)
            if face.box is not None:
                face.box = scale_to_original(np.asarray(face.box).reshape(2, 2)).reshape(4)
        pts, vis = finalize_face(face, rec.width, rec.height)
        store.save(image_id, pts, vis, base_revision=0, user=f"model:{prelabeller.name}", face=k,
                   box=face.box, source=f"prelabel:{prelabeller.name}", confidence=float(face.confidence))
    store.set_confidence(image_id, image_confidence(faces))
    return len(faces)
