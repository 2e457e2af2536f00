"""Where the morphable-model file comes from, and how the compact bundled copy is built.

Resolution order for the face model (`resolve_face_model_path`):
1. an explicit path argument;
2. the ``MSMA_FACE_MODEL`` environment variable;
3. the compact ICT-FaceKit copy bundled in ``msma/data/`` (MIT, licence beside it);
4. a download with ``huggingface_hub`` from ``MSMA_FACE_MODEL_REPO`` (a repo id the user sets).

The compact copy keeps what a photo can see (face, head/neck, eyeballs) of the ICT-FaceKit light model,
re-indexed, plus a precomputed low-frequency mesh-Laplacian basis used as the albedo model (ICT has none).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_FACE_MODEL = DATA_DIR / "ict_face_compact.npz"
FACE_MODEL_ENV = "MSMA_FACE_MODEL"
FACE_MODEL_REPO_ENV = "MSMA_FACE_MODEL_REPO"
FACE_MODEL_FILENAME = "ict_face_compact.npz"
# Regions of the ICT light model that a photo of a face can show.
KEPT_TRIANGLE_REGIONS = ("face", "head_neck", "eyeball_left", "eyeball_right")
N_LAPLACIAN_MODES = 77  # + 3 global colour modes = 80 albedo coefficients, the size Deep3DFaceRecon uses


class FaceModelNotFoundError(FileNotFoundError):
    pass


def resolve_local_file(
    explicit: str | os.PathLike | None, env_var: str, bundled: Path, what: str,
    error: type[FileNotFoundError] = FileNotFoundError,
) -> Path | None:
    """The first of: an explicit path, ``$env_var``, the bundled file. A path that is named but missing is an error
    (naming it); None when nothing applies, so the caller can fall back to the Hub."""
    if explicit is not None:
        candidate = Path(explicit).expanduser()
        if not candidate.is_file():
            raise error(f"{what} not found: {candidate}")
        return candidate
    env = os.environ.get(env_var)
    if env:
        candidate = Path(env).expanduser()
        if not candidate.is_file():
            raise error(f"{env_var}={env} does not name a file")
        return candidate
    return bundled if bundled.is_file() else None


def resolve_face_model_path(path: str | os.PathLike | None = None) -> Path:
    """Find the face-model file: explicit path, env override, bundled copy, then the hub."""
    local = resolve_local_file(path, FACE_MODEL_ENV, BUNDLED_FACE_MODEL, "face model file", FaceModelNotFoundError)
    if local is not None:
        return local
    repo_id = os.environ.get(FACE_MODEL_REPO_ENV)
    if repo_id:
        return download_face_model(repo_id)
    raise FaceModelNotFoundError(
        f"no face model: the bundled {BUNDLED_FACE_MODEL} is missing. Set {FACE_MODEL_ENV} to a local file or "
        f"{FACE_MODEL_REPO_ENV} to a Hugging Face repo id holding {FACE_MODEL_FILENAME}."
    )


def download_face_model(repo_id: str, filename: str = FACE_MODEL_FILENAME, revision: str | None = None) -> Path:
    """Fetch the compact model from the Hugging Face Hub (cached by huggingface_hub)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision))


def _vertex_adjacency(triangles: np.ndarray, n_vertices: int):
    import scipy.sparse as sp

    i = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]])
    j = np.concatenate([triangles[:, 1], triangles[:, 2], triangles[:, 0]])
    adjacency = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    return adjacency


def laplacian_basis(triangles: np.ndarray, n_vertices: int, n_modes: int) -> np.ndarray:
    """Smoothest non-constant eigenvectors of the graph Laplacian, (n_modes, n_vertices), unit RMS each."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    adjacency = _vertex_adjacency(triangles, n_vertices)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    laplacian = sp.diags(degree) - adjacency
    # Shift-invert around a small negative sigma: fast for the lowest eigenvalues of a PSD matrix.
    values, vectors = eigsh(laplacian.tocsc(), k=n_modes + 1, sigma=-1e-3, which="LM")
    order = np.argsort(values)
    vectors = vectors[:, order[1:]].T  # drop the constant mode
    vectors /= np.sqrt((vectors**2).mean(axis=1, keepdims=True))
    return vectors.astype(np.float32)


def build_compact_ict(source: str | os.PathLike, destination: str | os.PathLike = BUNDLED_FACE_MODEL) -> Path:
    """Cut the ICT-FaceKit light model down to the regions a photo shows and add the albedo basis."""
    src = np.load(source)
    region_names = [str(n) for n in src["region_names"]]
    keep_regions = [region_names.index(name) for name in KEPT_TRIANGLE_REGIONS]
    keep_tri = np.isin(src["triangle_region"], keep_regions)
    triangles = src["triangles"][keep_tri]
    kept_vertices = np.unique(triangles)
    remap = -np.ones(len(src["neutral"]), dtype=np.int64)
    remap[kept_vertices] = np.arange(len(kept_vertices))
    new_triangles = remap[triangles].astype(np.int32)

    def remap_indices(indices: np.ndarray) -> np.ndarray:
        mapped = remap[indices]
        return mapped[mapped >= 0].astype(np.int32)

    landmarks68 = remap[src["landmarks68"]]
    assert (landmarks68 >= 0).all(), "every landmark vertex must be kept"
    vertex_region_names = [str(n) for n in src["vertex_region_names"]]
    ranges = src["vertex_region_ranges"]
    vertex_region = np.full(len(kept_vertices), -1, dtype=np.int8)
    for code, name in enumerate(("face", "head_neck", "eyeball_left", "eyeball_right")):
        start, stop = ranges[vertex_region_names.index(name)]
        vertex_region[(kept_vertices >= start) & (kept_vertices < stop)] = code
    narrow_start, narrow_stop = ranges[vertex_region_names.index("narrow_face")]
    narrow_face = remap_indices(np.arange(narrow_start, narrow_stop))

    triangle_region = src["triangle_region"][keep_tri]
    skin = ~np.isin(triangle_region, [region_names.index("eyeball_left"), region_names.index("eyeball_right")])
    laplacian = laplacian_basis(new_triangles[skin], len(kept_vertices), N_LAPLACIAN_MODES)

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        destination,
        neutral=src["neutral"][kept_vertices].astype(np.float32),
        identity_basis=src["identity_basis"][:, kept_vertices].astype(np.float16),
        expression_basis=src["expression_basis"][:, kept_vertices].astype(np.float16),
        expression_names=src["expression_names"],
        triangles=new_triangles,
        triangle_uv_index=src["triangle_uv_index"][keep_tri].astype(np.int32),
        uv=src["uv"].astype(np.float32),
        triangle_region=triangle_region,
        region_names=src["region_names"],
        vertex_region=vertex_region,
        vertex_region_names=np.array(["face", "head_neck", "eyeball_left", "eyeball_right"]),
        landmarks68=landmarks68.astype(np.int32),
        narrow_face=narrow_face,
        fitting_vertices=remap_indices(src["fitting_vertices"]),
        rigid_vertices=remap_indices(src["rigid_vertices"]),
        albedo_laplacian=laplacian.astype(np.float16),
        source_vertex_index=kept_vertices.astype(np.int32),
    )
    return destination
