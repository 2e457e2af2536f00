from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from msma.evaluate import read_dlib_xml
from msma.image_io import load_image
from msma.landmarks import FaceLandmarks, available_detectors, detect_faces
from msma.landmarks.base import box_from_points, iou
from msma.landmarks.metrics import nme

DETECTORS = available_detectors()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "01_portrait.jpg"
# measured on 2008_002079.jpg (dlib labels): auto / dlib 0.041, mediapipe 0.064; the bounds leave a margin
MEDIAN_NME = {"auto": 0.06, "dlib": 0.06, "mediapipe": 0.09, "face_alignment": 0.09}


def _labels(shared_data, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(box, 68 points) of every face of ``name`` labelled in dlib's imglab XML files."""
    folder = shared_data / "dlib_faces"
    return [(box, points) for xml in sorted(folder.glob("*_with_face_landmarks.xml"))
            for file, box, points in read_dlib_xml(xml) if file == name]


def test_available_detectors_and_errors():
    assert set(DETECTORS) <= {"mediapipe", "dlib", "face_alignment"}
    with pytest.raises(ValueError, match="unknown detector"):
        detect_faces(np.zeros((64, 64, 3), np.uint8), detector="nope")
    with pytest.raises(ValueError):
        detect_faces(np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("detector", ["auto", *DETECTORS])
def test_blank_image_has_no_face(detector):
    if not DETECTORS:
        pytest.skip("no detector installed")
    assert detect_faces(np.full((240, 320, 3), 127, np.uint8), detector=detector) == []


@pytest.mark.parametrize("detector", ["auto", *DETECTORS])
def test_faces_on_labelled_photo(shared_data, detector):
    if not DETECTORS:
        pytest.skip("no detector installed")
    # 2008_002079.jpg: 6 faces labelled by dlib's predictor (training_with_face_landmarks.xml)
    img = load_image(shared_data / "dlib_faces" / "2008_002079.jpg")
    faces = detect_faces(img, detector=detector)
    assert len(faces) >= 4
    # every labelled face is found, with its points close to the labels (median NME over the faces)
    labels = _labels(shared_data, "2008_002079.jpg")
    errors = []
    for _, points in labels:
        best = max(faces, key=lambda f: iou(f.box, box_from_points(points)))
        assert iou(best.box, box_from_points(points)) > 0.5
        errors.append(nme(best.landmarks68, points))
    assert len(errors) == 6 and np.median(errors) < MEDIAN_NME[detector]
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for f in faces:
        assert f.landmarks68.shape == (68, 2) and f.box.shape == (4,) and 0 <= f.score <= 1
        assert f.five_points().shape == (5, 2)
        assert f.five_points()[0, 0] < f.five_points()[1, 0]  # image-left eye first
        if f.dense is not None:
            assert f.dense.shape == (478, 2)
    if detector == "auto" and "dlib" in DETECTORS:
        assert faces[0].detector == "dlib"
        if "mediapipe" in DETECTORS:
            assert faces[0].dense is not None


def test_large_photo_points_map_back(shared_data):
    if not DETECTORS:
        pytest.skip("no detector installed")
    import cv2

    img = load_image(shared_data / "dlib_faces" / "2008_002079.jpg")
    base = detect_faces(img)
    big = cv2.resize(img, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)  # 3000x2250 > DETECT_MAX_SIDE
    faces = detect_faces(big)
    assert len(faces) >= len(base) - 1
    # the largest face lands on the same place, scaled (continuous coordinates: resizing is a product)
    expected = base[0].landmarks68 * 6
    iod = np.linalg.norm(expected[45] - expected[36])
    assert np.linalg.norm(faces[0].landmarks68 - expected, axis=1).mean() / iod < 0.08


@pytest.mark.parametrize("side", [40.0, 300.0, 2000.0])
def test_square_crop_geometry(side):
    from msma.landmarks.detectors.base import apply_affine as _apply
    from msma.landmarks.detectors.base import square_crop as _square_crop

    img = np.zeros((3000, 3000, 3), np.uint8)
    img[1195:1206, 1495:1506] = 255  # 11x11 block centred on pixel (1500, 1200): continuous (1500.5, 1200.5)
    crop, inv = _square_crop(img, 1490.0, 1195.0, side, 256)
    fwd = np.linalg.inv(np.vstack([inv, [0, 0, 1]]))[:2]
    expected = _apply(fwd, np.array([[1500.5, 1200.5]]))[0]
    ys, xs = np.nonzero(crop[..., 0].astype(float) > 0)
    w = crop[ys, xs, 0].astype(float)
    centre = np.array([np.average(xs, weights=w), np.average(ys, weights=w)]) + 0.5  # pixel index -> continuous
    np.testing.assert_allclose(centre, expected, atol=0.5)


@pytest.mark.parametrize("detector", ["auto", *DETECTORS])
def test_known_boxes_skip_detection(shared_data, detector):
    if not DETECTORS:
        pytest.skip("no detector installed")
    img = load_image(shared_data / "dlib_faces" / "2008_002079.jpg")
    labels = _labels(shared_data, "2008_002079.jpg")
    boxes = np.array([box for box, _ in labels])
    faces = detect_faces(img, detector=detector, boxes=boxes)
    assert len(faces) == len(labels)  # one per box, in the boxes' order
    bound = 0.05 if detector in ("auto", "dlib") else 0.12  # dlib's predictor made these labels from these boxes
    for face, (_, points) in zip(faces, labels):
        assert face.score == 1.0 and nme(face.landmarks68, points) < bound
    assert detect_faces(img, detector=detector, boxes=[]) == []
    with pytest.raises(ValueError, match="boxes"):
        detect_faces(img, detector=detector, boxes=[[10, 10, 5, 20]])


def test_mediapipe_keeps_its_depth_in_photo_pixels():
    if "mediapipe" not in DETECTORS:
        pytest.skip("mediapipe is not installed")
    import cv2

    img = load_image(EXAMPLE)
    face = detect_faces(img, detector="mediapipe")[0]
    assert face.dense_depth is not None and face.dense_depth.shape == (478,)
    assert np.isfinite(face.dense_depth).all()
    # x's scale: a face is about half as deep as it is wide (0.56 on this photo)
    ratio = face.dense_depth.std() / face.dense[:, 0].std()
    assert 0.3 < ratio < 1.0
    assert face.dense_depth[4] < np.median(face.dense_depth)  # the nose tip (mesh vertex 4) is nearer than most
    # photo pixels: the same face in the photo upscaled 2x is twice as deep
    big = detect_faces(cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), detector="mediapipe")[0]
    assert big.dense_depth.std() / face.dense_depth.std() == pytest.approx(2.0, rel=0.1)
    # auto attaches the mesh, depth included
    auto = detect_faces(img)[0]
    assert auto.dense_depth is not None and auto.dense is not None


def test_scaled_carries_the_depth():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 100, (68, 2))
    face = FaceLandmarks(box_from_points(lm), lm, 0.9, "mediapipe", rng.uniform(0, 100, (478, 2)),
                         dense_depth=rng.normal(0, 10, 478))
    half = face.scaled(0.5)
    np.testing.assert_allclose(half.dense, face.dense * 0.5)
    np.testing.assert_allclose(half.dense_depth, face.dense_depth * 0.5)
    np.testing.assert_allclose(face.scaled(2.0, 0.5).dense_depth, face.dense_depth)  # sqrt(sx * sy)
    assert FaceLandmarks(face.box, lm, 0.9, "dlib").scaled(2.0).dense_depth is None
