from __future__ import annotations

import numpy as np

from annotate.prelabel import get_prelabeller
from msma.image_io import load_image


def test_reconstruction_prelabeller_gives_reprojected_points(shared_data) -> None:
    prelabeller = get_prelabeller("reconstruction")
    faces = prelabeller.predict(load_image(shared_data / "faces_in_the_wild" / "img12.jpg"))
    assert len(faces) == 1
    assert faces[0].points.shape == (68, 2)
    assert 0.3 < faces[0].confidence <= 1.0
    assert prelabeller.predict(np.full((128, 128, 3), 100, np.uint8)) == []
