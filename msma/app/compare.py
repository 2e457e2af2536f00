"""The Compare tab: one photo by two methods, and two photos' identity shapes (same person?)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msma.app.inputs import Upload, detect, file_stem, load_photo
from msma.app.state import PREVIEW_TEXTURE_FORMAT, AppModels, Options, new_workdir, run_engine


@dataclass
class MethodComparison:
    glb_a: str
    glb_b: str
    overlay_a: np.ndarray
    overlay_b: np.ndarray
    summary: str
    warnings: list[str]


def compare_methods(models: AppModels, value: Any, method_a: str, method_b: str, texture: bool = True,
                    photometric: bool = True, session_dir: str | None = None) -> MethodComparison:
    """The same photo's largest face reconstructed by two methods."""
    from msma.api import ReconstructionResult
    from msma.compare import identity_distance
    from msma.export import export_glb

    for key in (method_a, method_b):
        models.engine(key)
    photo = load_photo(value, max_side=models.max_side)
    detection = detect(models, photo)[0]
    out = Path(session_dir or new_workdir()) / f"compare_{uuid.uuid4().hex[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    faces, rows = [], []
    for tag, key in (("a", method_a), ("b", method_b)):
        start = time.perf_counter()
        face = run_engine(models, Options(key, texture, photometric), photo.image, detection, 0)
        seconds = time.perf_counter() - start
        faces.append(face)
        p = face.pose
        rows.append(f"| {tag.upper()} | {models.engine(key).label} | {seconds:.1f} s | {face.landmark_error_px:.1f} px "
                    f"| {p.pitch:+.1f}° / {p.yaw:+.1f}° / {p.roll:+.1f}° |")
    glbs = [str(export_glb(f.mesh(), out / f"{file_stem(photo.name)}_{tag}_{file_stem(key)}.glb",
                           texture_format=PREVIEW_TEXTURE_FORMAT))
            for tag, f, key in zip("ab", faces, (method_a, method_b))]
    overlays = [ReconstructionResult(photo.image, [f], {}).overlay() for f in faces]
    dist = identity_distance(faces[0].neutral_vertices, faces[1].neutral_vertices,
                             region_vertex_indices=models.model.face_vertices.cpu().numpy())
    summary = ("| | method | time | landmark error | pitch / yaw / roll |\n|---|---|---|---|---|\n" + "\n".join(rows)
               + f"\n\nIdentity-shape difference A vs B (face region, rigidly aligned): mean {dist.mean_mm:.2f} mm, "
                 f"max {dist.max_mm:.2f} mm.")
    return MethodComparison(glbs[0], glbs[1], overlays[0], overlays[1], summary, photo.warnings)


@dataclass
class IdentityComparison:
    glb_a: str
    glb_b: str
    heatmap: Any  # plotly Figure
    distance: dict[str, float]
    summary: str
    warnings: list[str]


def _upload_sha256(value: Any) -> str | None:
    """SHA-256 of an already accepted upload / local path (None for arrays and anything else)."""
    path = value.path if isinstance(value, Upload) else value if isinstance(value, (str, os.PathLike)) else None
    if path is None:
        return None
    from msma.identity_calibration import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def compare_identities(models: AppModels, value_a: Any, value_b: Any, method: str | None = None,
                       session_dir: str | None = None) -> IdentityComparison:
    """Two photos' largest faces: identity (neutral) shapes, per-vertex distance heatmap and summary distance."""
    from msma.compare import distance_heatmap_figure, identity_distance
    from msma.export import MeshData, export_glb

    options = Options(method or models.default, texture=False, photometric=True)
    models.engine(options.method)
    photos = [load_photo(v, max_side=models.max_side, what=f"photo {t}") for v, t in ((value_a, "A"), (value_b, "B"))]
    faces = [run_engine(models, options, p.image, detect(models, p)[0], 0) for p in photos]
    region = models.model.face_vertices.cpu().numpy()
    dist = identity_distance(faces[0].neutral_vertices, faces[1].neutral_vertices, region_vertex_indices=region)
    out = Path(session_dir or new_workdir()) / f"identity_{uuid.uuid4().hex[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    grey = np.full((len(faces[0].neutral_vertices), 3), 0.75)
    glbs = []
    for tag, face, photo in zip("ab", faces, photos):
        mesh = MeshData(vertices=face.neutral_vertices, faces=face.faces, vertex_colors=grey,
                        unit_m=face.mesh().unit_m)
        glbs.append(str(export_glb(mesh, out / f"{file_stem(photo.name)}_{tag}_identity.glb")))
    # heatmap on A's face region only (the back of the head is not observed)
    keep = np.zeros(len(faces[0].neutral_vertices), bool)
    keep[region] = True
    tri = faces[0].faces[keep[faces[0].faces].all(axis=1)]
    used = np.unique(tri)
    remap = np.full(len(keep), -1)
    remap[used] = np.arange(len(used))
    fig = distance_heatmap_figure(faces[0].neutral_vertices[used], remap[tri], dist.per_vertex_mm[used],
                                  title="identity distance B → A (mm)")
    from msma.identity_calibration import fingerprint, identity_verdict

    engine = models.engine(options.method)
    weights = getattr(engine.reconstructor, "weights_path", None)
    verdict = "\n\n" + identity_verdict(dist.mean_mm, engine.method, fingerprint(engine.method, weights),
                                         (_upload_sha256(value_a), _upload_sha256(value_b)))
    summary = (f"**Mean identity distance: {dist.mean_mm:.2f} mm** (median {dist.median_mm:.2f}, "
               f"RMS {dist.rms_mm:.2f}, max {dist.max_mm:.2f} mm over {len(region)} face vertices, "
               f"after rigid alignment).{verdict}")
    return IdentityComparison(glbs[0], glbs[1], fig, dist.summary(), summary, photos[0].warnings + photos[1].warnings)

