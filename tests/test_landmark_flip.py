from __future__ import annotations

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points
from msma.landmarks.flip import MESH_MIRROR, flip_averaged, mirror_face
from msma.landmarks.mapping import IBUG68_MIRROR


def face(landmarks: np.ndarray, dense: np.ndarray, detector: str = "mediapipe") -> FaceLandmarks:
    return FaceLandmarks(box_from_points(landmarks), landmarks, 0.9, detector, dense, dense[:, 0] * 0.1)


def test_mirror_face_is_an_involution_that_swaps_left_and_right() -> None:
    rng = np.random.default_rng(0)
    original = face(rng.uniform(100, 200, (68, 2)), rng.uniform(100, 200, (478, 2)))
    back = mirror_face(mirror_face(original, 320), 320)
    assert np.allclose(back.landmarks68, original.landmarks68) and np.allclose(back.dense, original.dense)
    assert np.allclose(back.dense_depth, original.dense_depth) and np.allclose(back.box, original.box)
    once = mirror_face(original, 320)
    # the left eye's outer corner (36) of the flipped photo is the right eye's outer corner (45) of the original
    assert np.allclose(once.landmarks68[36], [320 - original.landmarks68[45, 0], original.landmarks68[45, 1]])
    assert (MESH_MIRROR[MESH_MIRROR] == np.arange(478)).all() and (IBUG68_MIRROR[IBUG68_MIRROR] == np.arange(68)).all()


def test_flip_average_cancels_a_detector_offset_that_is_not_mirror_symmetric() -> None:
    """A detector that always answers 3 px right of the truth is 3 px right of it in the flipped photo too, i.e. 3 px
    left once mapped back: the average is the truth. A face the flipped pass gives to another detector keeps its
    68 points."""
    rng = np.random.default_rng(1)
    width = 400
    truth = face(rng.uniform(120, 260, (68, 2)), rng.uniform(120, 260, (478, 2)))
    image = np.zeros((300, width, 3), np.uint8)
    image[0, 0] = 255  # marks the unflipped photo
    shift = np.array([3.0, 0.0])

    def detector(photo: np.ndarray, name: str = "mediapipe") -> list[FaceLandmarks]:
        seen = truth if photo[0, 0, 0] == 255 else mirror_face(truth, width)
        return [face(seen.landmarks68 + shift, seen.dense + shift, name)]

    averaged = flip_averaged(image, detector(image), detector)[0]
    assert np.allclose(averaged.landmarks68, truth.landmarks68) and np.allclose(averaged.dense, truth.dense)
    other = flip_averaged(image, detector(image), lambda photo: detector(photo, "dlib"))[0]
    assert np.allclose(other.landmarks68, truth.landmarks68 + shift)
    assert np.allclose(other.dense, truth.dense)  # the mesh points are mediapipe's in both passes
    assert flip_averaged(image, detector(image), lambda photo: [])[0].landmarks68 is not None


def test_detect_faces_flip_test_on_a_photo(shared_data) -> None:
    """On a real photo the averaged points stay next to the plain ones (the detectors nearly agree with their mirror
    answer) but are not the plain ones (the flipped pass really ran)."""
    from msma.image_io import load_image
    from msma.landmarks import detect_faces

    photo = load_image(sorted((shared_data / "faces_in_the_wild").glob("*.jpg"))[0])
    plain, flipped = detect_faces(photo, "mediapipe"), detect_faces(photo, "mediapipe", flip_test=True)
    assert len(plain) == len(flipped) >= 1
    moved = np.linalg.norm(plain[0].landmarks68 - flipped[0].landmarks68, axis=1).mean() / plain[0].interocular
    assert 1e-4 < moved < 0.03
    boxes = [plain[0].box]
    in_box = detect_faces(photo, "mediapipe", boxes=boxes, flip_test=True)
    assert len(in_box) == 1 and np.linalg.norm(in_box[0].landmarks68 - flipped[0].landmarks68, axis=1).mean() < (
        0.05 * plain[0].interocular)
