"""The collection job on a local Ray instance (loopback only): same rows as the local job, resume, error rows.
Runs only where Ray is installed (pip install -r requirements-ray.txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from msma.collection import CollectionSettings, iter_rows, open_source, run_collection  # noqa: E402
from msma.collection_ray import run_collection_ray  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_ray_job_matches_local_job_and_resumes(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("01_portrait.jpg", "03_couple.jpg"):
        image = Image.open(EXAMPLES / name).convert("RGB")
        image.thumbnail((256, 256))
        image.save(photos / name)
    (photos / "broken.png").write_bytes(b"\x89PNG not really")
    settings = CollectionSettings(method="network", detector="dlib", batch_size=1, workers=2)
    source = open_source(photos)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    try:
        report = run_collection_ray(source, tmp_path / "ray", settings, progress=False)
        assert report.processed == 3 and report.failed == 1 and report.faces >= 3
        again = run_collection_ray(source, tmp_path / "ray", settings, progress=False)
        assert again.processed == 0 and again.skipped == 3
    finally:
        ray.shutdown()
    local = run_collection(source, tmp_path / "local", CollectionSettings(method="network", detector="dlib"),
                           progress=False)
    assert local.faces == report.faces
    key = lambda row: (row["photo_id"], row["face_index"])  # noqa: E731
    ray_rows = sorted(iter_rows(tmp_path / "ray"), key=key)
    local_rows = sorted(iter_rows(tmp_path / "local"), key=key)
    assert [key(r) for r in ray_rows] == [key(r) for r in local_rows]
    for a, b in zip(ray_rows, local_rows):
        assert a["status"] == b["status"]
        if a["status"] == "ok":
            np.testing.assert_allclose(a["identity"], b["identity"], atol=1e-5)
        else:
            assert "ImageLoadError" in a["error"]
