from __future__ import annotations

import numpy as np
import pytest

from msma.image_io import load_image
from msma.landmarks import available_detectors, detect_faces

DETECTORS = available_detectors()


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
    from msma.landmarks.detect import _apply, _square_crop

    img = np.zeros((3000, 3000, 3), np.uint8)
    img[1195:1206, 1495:1506] = 255  # 11x11 block centred on pixel (1500, 1200): continuous (1500.5, 1200.5)
    crop, inv = _square_crop(img, 1490.0, 1195.0, side, 256)
    fwd = np.linalg.inv(np.vstack([inv, [0, 0, 1]]))[:2]
    expected = _apply(fwd, np.array([[1500.5, 1200.5]]))[0]
    ys, xs = np.nonzero(crop[..., 0].astype(float) > 0)
    w = crop[ys, xs, 0].astype(float)
    centre = np.array([np.average(xs, weights=w), np.average(ys, weights=w)]) + 0.5  # pixel index -> continuous
    np.testing.assert_allclose(centre, expected, atol=0.5)
