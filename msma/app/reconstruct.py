"""The Reconstruct tab: photo -> the chosen face's 3D preview, then its details (overlay, shape view, chart,
downloads, face picker) and the expression / identity sliders that re-pose it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msma.app.inputs import detect, file_stem, load_photo
from msma.app.plots import blendshape_figure, face_gallery, pose_markdown
from msma.app.state import PREVIEW_TEXTURE_FORMAT, AppError, AppModels, Options, Session, new_workdir, run_engine

# slider name -> ICT blendshapes it drives (left/right pairs move together)
KEY_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "jawOpen": ("jawOpen",),
    "smile": ("mouthSmile_L", "mouthSmile_R"),
    "eyeBlink": ("eyeBlink_L", "eyeBlink_R"),
    "browInnerUp": ("browInnerUp_L", "browInnerUp_R"),
    "browDown": ("browDown_L", "browDown_R"),
    "mouthPucker": ("mouthPucker",),
    "mouthFunnel": ("mouthFunnel",),
    "cheekPuff": ("cheekPuff_L", "cheekPuff_R"),
}
N_IDENTITY_SLIDERS = 5
IDENTITY_RANGE = 3.0  # slider range of identity modes (model coefficients)


@dataclass
class Preview:
    """Fast first answer: the GLB for the 3D viewer."""

    session: Session
    glb: str
    status: str
    warnings: list[str]


def reconstruct(models: AppModels, value: Any, method: str | None = None, texture: bool = True,
                photometric: bool = True, face_index: int | None = None, session: Session | None = None) -> Preview:
    """Photo -> the selected face (default 0 = largest) reconstructed and its textured GLB written."""
    start = time.perf_counter()
    options = Options(method or models.default, bool(texture), bool(photometric))
    models.engine(options.method)  # validate before the heavy work
    photo = load_photo(value, max_side=models.max_side)
    detections = detect(models, photo)
    index = 0 if face_index is None else int(face_index)
    warnings = list(photo.warnings)
    if not 0 <= index < len(detections):
        warnings.append(f"there is no face #{index + 1}; showing the largest face instead")
        index = 0
    workdir = session.workdir if session is not None and Path(session.workdir).is_dir() else new_workdir()
    session = Session(photo.image, photo.name, detections, options, workdir, selected=index)
    return _preview(models, session, warnings, start)


def select_face(models: AppModels, session: Session | None, index: int | None) -> Preview:
    """Switch to another detected face of the same photo (reconstructed on first use, then cached)."""
    if session is None:
        raise AppError("Reconstruct a photo first.")
    start = time.perf_counter()
    index = int(index or 0)
    if not 0 <= index < len(session.detections):
        raise AppError(f"There is no face #{index + 1}: the photo has {len(session.detections)} detected face(s).")
    session.selected = index
    return _preview(models, session, [], start)


def download_stem(session: Session) -> str:
    """``<photo>_face<k>``: every file of one face, the 3D viewer's GLB included, is named after the photo."""
    return f"{file_stem(session.name)}_face{session.selected + 1}"


def _preview(models: AppModels, session: Session, warnings: list[str], start: float) -> Preview:
    from msma.export import export_glb

    if session.selected not in session.faces:
        det = session.detections[session.selected]
        session.faces[session.selected] = run_engine(models, session.options, session.photo, det, session.selected)
    face = session.face
    path = export_glb(face.mesh(), session.new_dir("preview") / f"{download_stem(session)}.glb",
                      texture_format=PREVIEW_TEXTURE_FORMAT)
    n = len(session.detections)
    label = models.engine(session.options.method).label
    status = (f"{session.name}: face {session.selected + 1} of {n} ({label}, detector {face.detector}) "
              f"in {time.perf_counter() - start:.1f} s")
    return Preview(session, str(path), status, warnings)


@dataclass
class Details:
    overlay: np.ndarray
    shape: np.ndarray
    blendshape_plot: Any  # plotly Figure
    pose: dict[str, float]
    pose_markdown: str
    downloads: list[str]
    gallery: list[tuple[np.ndarray, str]]
    expression_values: list[float]  # one per KEY_EXPRESSIONS entry
    identity_values: list[float]  # N_IDENTITY_SLIDERS values


def details(models: AppModels, session: Session | None, wireframe: bool = False) -> Details | None:
    """Everything after the 3D preview: overlay, shape render, blendshape chart, pose, downloads, face picker."""
    from msma.threads import single_torch_thread

    if session is None or session.selected not in session.faces:
        return None
    with single_torch_thread():
        return _details(session, wireframe)


def _details(session: Session, wireframe: bool) -> Details:
    from msma.api import ReconstructionResult
    from msma.shading import shape_view

    face = session.face
    overlay = ReconstructionResult(session.photo, [face], {}).overlay(wireframe=bool(wireframe))
    out = session.new_dir("downloads")
    files = face.export(out, stem=download_stem(session), formats=("obj.zip", "glb", "ply", "json"))
    downloads = [str(files[k]) for k in ("obj.zip", "glb", "ply", "json") if k in files]
    pose = {k: round(v, 2) for k, v in face.pose.as_dict().items()}
    return Details(
        overlay=overlay,
        shape=shape_view(face, session.photo.shape[:2]),
        blendshape_plot=blendshape_figure(face.blendshapes),
        pose=pose,
        pose_markdown=pose_markdown(face),
        downloads=downloads,
        gallery=face_gallery(session),
        expression_values=slider_values(session)[: len(KEY_EXPRESSIONS)],
        identity_values=slider_values(session)[len(KEY_EXPRESSIONS):],
    )


def slider_values(session: Session | None) -> list[float]:
    """Expression then identity slider values of the current face (the reconstruction, before any editing)."""
    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first; the sliders edit the reconstructed face.")
    face = session.face
    identity = face.coefficients.identity[0, :N_IDENTITY_SLIDERS].tolist()
    return expression_slider_values(face.blendshapes) + [round(float(v), 3) for v in identity]


def expression_slider_values(blendshapes: Mapping[str, float]) -> list[float]:
    return [round(float(np.mean([blendshapes.get(n, 0.0) for n in names])), 3) for names in KEY_EXPRESSIONS.values()]


def repose(models: AppModels, session: Session | None, expression_values: Sequence[float],
           identity_values: Sequence[float]) -> str:
    """New GLB of the current face with the slider values (no re-fitting; texture / colours kept)."""
    from msma.export import MeshData, export_glb
    from msma.threads import single_torch_thread

    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first; the sliders edit the reconstructed face.")
    face = session.face
    expression = {}
    for value, names in zip(expression_values, KEY_EXPRESSIONS.values()):
        for name in names:
            if name in face.blendshapes:
                expression[name] = float(np.clip(value, 0.0, 1.0))
    identity = {i: float(v) for i, v in enumerate(identity_values) if i < face.coefficients.identity.shape[1]}
    with single_torch_thread():
        vertices = models.engine(session.options.method).reconstructor.repose(face, expression=expression,
                                                                               identity=identity)
    mesh = face.mesh()
    mesh = MeshData(vertices=vertices, faces=mesh.faces, uv=mesh.uv, face_uv_index=mesh.face_uv_index,
                    texture=mesh.texture, vertex_colors=mesh.vertex_colors, unit_m=mesh.unit_m)
    return str(export_glb(mesh, session.new_dir("repose") / f"{download_stem(session)}_edited.glb",
                          texture_format=PREVIEW_TEXTURE_FORMAT))


