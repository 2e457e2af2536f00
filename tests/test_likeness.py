"""msma.likeness: renders of a textured reconstruction and dlib's distance of the photo to them."""

from pathlib import Path

import numpy as np
import pytest

from msma.face_embedding import SAME_PERSON_DISTANCE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def scored():
    from msma.api import Reconstructor
    from msma.likeness import LikenessScorer

    rec = Reconstructor(method="fitting")
    scorer = LikenessScorer(rec.model)
    faces = [rec(EXAMPLES / name, largest_only=True, texture=True).faces[0]
             for name in ("01_portrait.jpg", "02_portrait.jpg")]
    return scorer, faces


def test_render_at_the_fitted_pose_gives_back_the_aligned_crop(scored):
    """The texture came from the photo: re-rendered at the fitted pose it must land on the crop's own pixels
    (a UV, pixel-centre or camera mismatch shifts it and the difference grows several times)."""
    scorer, faces = scored
    face = faces[0]
    render = scorer.render(face, face.coefficients.angles).astype(np.float64)
    crop = face.alignment.image.astype(np.float64)
    inner = np.zeros(crop.shape[:2], bool)
    inner[80:170, 70:154] = True  # eyes, nose and mouth of the 5-point aligned crop
    same = np.abs(render - crop)[inner].mean()
    shifted = np.abs(np.roll(render, 4, axis=1) - crop)[inner].mean()
    assert same < 12.0
    assert same < 0.6 * shifted


def test_photo_is_closer_to_its_own_reconstruction_than_to_another_persons(scored):
    scorer, faces = scored
    own = [scorer(face) for face in faces]
    assert set(own[0].distances) == set(scorer.yaws)
    for likeness in own:
        assert likeness.distances[0.0] < SAME_PERSON_DISTANCE  # dlib's threshold, at the frontal view
    # photo 0 against the renders of photo 1's reconstruction: another person
    renders = [scorer.render_view(faces[1], yaw) for yaw in scorer.yaws]
    emb = scorer.embed([faces[0].alignment.image, *renders])
    other = np.linalg.norm(emb[1:] - emb[0], axis=1).mean()
    assert other > own[0].mean_distance + 0.1


def test_needs_a_texture(scored):
    import dataclasses

    scorer, faces = scored
    with pytest.raises(ValueError, match="texture"):
        scorer(dataclasses.replace(faces[0], texture=None))
