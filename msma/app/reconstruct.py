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
    if session.selected not in session.faces:
        det = session.detections[session.selected]
        session.faces[session.selected] = run_engine(models, session.options, session.photo, det, session.selected)
    face = session.face
    path = _viewer_glb(face, face.rig() if face.expression_basis is not None else None,
                       session.new_dir("preview") / f"{download_stem(session)}.glb")
    n = len(session.detections)
    label = models.engine(session.options.method).label
    status = (f"{session.name}: face {session.selected + 1} of {n} ({label}, detector {face.detector}) "
              f"in {time.perf_counter() - start:.1f} s")
    return Preview(session, str(path), status, warnings)


def _viewer_glb(face, rig, path: Path, mesh=None) -> Path:
    """The 3D viewer's GLB: the rigged face (53 ARKit morph targets, ``rig.weights`` as the default pose) when the
    reconstruction has a blendshape basis, else the static ``mesh`` (default: the fitted face).

    Gradio's Model3D draws GLBs with Babylon.js, whose glTF loader gives each morph target the influence
    ``node.weights[i]``, else ``mesh.weights[i]``, else 0 (``_loadMorphTargets`` in babylonjs-loaders' glTFLoader,
    the build bundled in gradio 6.31's ``templates/frontend/assets/glTFLoader-*.js``), so the viewer shows the
    default weights: the photo's expression, or the sliders'.
    """
    from msma.export import export_glb
    from msma.export_rig import export_rigged_glb

    if rig is not None:
        return export_rigged_glb(rig, path, texture_format=PREVIEW_TEXTURE_FORMAT)
    return export_glb(face.mesh() if mesh is None else mesh, path, texture_format=PREVIEW_TEXTURE_FORMAT)


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
    downloads = reconstruction_downloads(session)
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


RECONSTRUCT_DOWNLOADS = ("obj.zip", "glb", "static.glb", "ply", "json")


def _download_files(face, out: Path, stem: str, rig=None, mesh=None, blendshapes=None) -> list[str]:
    """The downloads of one face, in `RECONSTRUCT_DOWNLOADS` order: OBJ zip, the rigged GLB (morph targets, default
    weights = the expression), ``<stem>_static.glb`` (the posed mesh, no morph targets), PLY, blendshape JSON.

    Defaults are the reconstruction itself; `repose` passes the edited rig, posed mesh and weights."""
    from msma.export import export_all, export_glb

    rig = rig if rig is not None else (face.rig() if face.expression_basis is not None else None)
    mesh = face.mesh() if mesh is None else mesh
    pose = np.deg2rad([face.pose.pitch, face.pose.yaw, face.pose.roll])
    files = export_all(mesh, out, stem=stem, formats=("obj.zip", "glb", "ply", "json"),
                       blendshapes=face.blendshapes if blendshapes is None else blendshapes,
                       pose=(pose, face.pose.translation), rig=rig)
    if rig is not None:  # the GLB above is the rigged one: keep the static export available next to it
        files["static.glb"] = export_glb(mesh, out / f"{stem}_static.glb")
    return [str(files[k]) for k in RECONSTRUCT_DOWNLOADS if k in files]


def reconstruction_downloads(session: Session | None) -> list[str]:
    """`RECONSTRUCT_DOWNLOADS` of the current face as reconstructed (what "reset" hands back after edits)."""
    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first.")
    return _download_files(session.face, session.new_dir("downloads"), download_stem(session))


def slider_values(session: Session | None) -> list[float]:
    """Expression then identity slider values of the current face (the reconstruction, before any editing)."""
    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first; the sliders edit the reconstructed face.")
    face = session.face
    identity = face.coefficients.identity[0, :N_IDENTITY_SLIDERS].tolist()
    return expression_slider_values(face.blendshapes) + [round(float(v), 3) for v in identity]


def expression_slider_values(blendshapes: Mapping[str, float]) -> list[float]:
    return [round(float(np.mean([blendshapes.get(n, 0.0) for n in names])), 3) for names in KEY_EXPRESSIONS.values()]


@dataclass
class Edited:
    """The face re-posed by the sliders."""

    glb: str  # the viewer's GLB: rigged, the slider weights as its default morph weights
    downloads: list[str]  # `RECONSTRUCT_DOWNLOADS` of the edited face (empty when not asked for)
    weights: dict[str, float]  # every blendshape weight of the edited face (the fit's, sliders substituted)


def repose(models: AppModels, session: Session | None, expression_values: Sequence[float],
           identity_values: Sequence[float], downloads: bool = True) -> Edited:
    """The current face with the slider values, no re-fitting: a rigged GLB whose default morph weights are the
    fitted weights with the sliders' substituted, on the neutral mesh of the slider identity (the 53 targets are
    the model's expression basis, the same for every identity: ``vertices = mean + B_id @ id + B_exp @ w``).
    Texture / colours and the eyeball nodes are kept; with ``downloads`` the `RECONSTRUCT_DOWNLOADS` of the edited
    face are written too (about 1.4 s on 2 CPU cores, 4x the viewer's GLB: the app writes them in a second step)."""
    from msma.export import MeshData
    from msma.export_rig import Rig
    from msma.threads import single_torch_thread

    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first; the sliders edit the reconstructed face.")
    face = session.face
    weights = dict(face.blendshapes)
    for value, names in zip(expression_values, KEY_EXPRESSIONS.values()):
        for name in names:
            if name in weights:
                weights[name] = float(np.clip(value, 0.0, 1.0))
    identity = {i: float(v) for i, v in enumerate(identity_values) if i < face.coefficients.identity.shape[1]}
    reconstructor = models.engine(session.options.method).reconstructor
    with single_torch_thread():
        if face.expression_basis is None:  # no blendshape basis: a static re-posed mesh, as before rigging
            neutral = None
            posed = reconstructor.repose(face, expression=weights, identity=identity)
        else:
            neutral = reconstructor.repose(face, expression=dict.fromkeys(weights, 0.0), identity=identity)
    base = face.mesh(neutral=True)
    stem = f"{download_stem(session)}_edited"
    rig = None
    if neutral is not None:
        rig = Rig(MeshData(vertices=neutral, faces=base.faces, uv=base.uv, face_uv_index=base.face_uv_index,
                           texture=base.texture, vertex_colors=base.vertex_colors, unit_m=base.unit_m),
                  face.expression_basis, list(weights), np.array(list(weights.values())), eyes=face.eyeball_vertices)
        posed = rig.posed_vertices()
    mesh = MeshData(vertices=posed, faces=base.faces, uv=base.uv, face_uv_index=base.face_uv_index,
                    texture=base.texture, vertex_colors=base.vertex_colors, unit_m=base.unit_m)
    viewer = _viewer_glb(face, rig, session.new_dir("repose") / f"{stem}.glb", mesh=mesh)
    files = _download_files(face, session.new_dir("repose_downloads"), stem, rig=rig, mesh=mesh,
                            blendshapes=weights) if downloads else []
    return Edited(str(viewer), files, weights)
