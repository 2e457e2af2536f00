"""3D scan protocol (MICC Florence / FaceWarehouse / NoW style): crop, rigid ICP, point-to-surface error in mm.

Protocol (Deep3DFaceRecon / NoW):
1. the ground-truth scan (points in mm) is cropped to a sphere of ``radius_mm`` (95) around its nose tip;
2. the predicted mesh (model units -> mm) is rigidly aligned to the cropped scan: initial similarity-free rigid
   transform from corresponding landmarks when both sides have them (NoW: 7 points), otherwise nose-tip + centroid
   alignment; then point-to-point ICP (scipy cKDTree) on the predicted face-region vertices;
3. the distance from every cropped scan point to the predicted surface (exact closest point on the triangles
   near it) gives RMSE / mean / median in mm; per-subject statistics aggregate images of one subject.

Dataset layouts accepted by `discover_pairs` (user supplied, not redistributed):
  generic / MICC / FaceWarehouse: DIR/<subject>/ holds images (jpg/png) and one scan (obj/ply/off/stl/wrl-as-obj)
      and optionally ``*landmarks*.txt|npy`` (K x 3 scan landmarks in mm, 7-point NoW order or 68 iBUG order).
  NoW: DIR/iphone_pictures/<subject>/<kind>/*.jpg, DIR/scans/<subject>/*.obj, DIR/scans_lmks_onlypp/<subject>/*.pp.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from msma.image_io import PHOTO_EXTENSIONS

SCAN_EXTENSIONS = (".obj", ".ply", ".off", ".stl")
# NoW's 7 scan landmarks: outer/inner eye corners (right, left), nose tip, mouth corners, in iBUG indices
NOW_LANDMARKS_IBUG = (36, 39, 42, 45, 30, 48, 54)


@dataclass
class ScanError:
    rmse: float
    mean: float
    median: float
    n_points: int
    icp_iterations: int

    def as_dict(self) -> dict:
        return {"rmse_mm": self.rmse, "mean_mm": self.mean, "median_mm": self.median, "n_points": self.n_points,
                "icp_iterations": self.icp_iterations}


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, scale: bool = False):
    """Best rotation R, translation t (and scale s) with ``s * R @ src_i + t ~= dst_i``. -> (R, t, s)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    a, b = src - ms, dst - md
    cov = (w[:, None] * b).T @ a
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    r = u @ fix @ vt
    s = float((sig * np.diag(fix)).sum() / (w[:, None] * a * a).sum()) if scale else 1.0
    return r, md - s * r @ ms, s


def crop_scan(points: np.ndarray, nose_tip: np.ndarray, radius_mm: float = 95.0) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return points[np.linalg.norm(points - np.asarray(nose_tip, np.float64), axis=1) <= radius_mm]


def icp(source: np.ndarray, target: np.ndarray, iterations: int = 50, tolerance: float = 1e-5, trim: float = 0.9,
        init: tuple[np.ndarray, np.ndarray] | None = None):
    """Rigid point-to-point ICP moving ``source`` onto ``target``; the worst (1 - trim) pairs are ignored each step.

    Returns (R, t, iterations) with ``source @ R.T + t`` aligned.
    """
    tree = cKDTree(target)
    r, t = (np.eye(3), np.zeros(3)) if init is None else (np.asarray(init[0], float), np.asarray(init[1], float))
    previous = np.inf
    done = 0
    for step in range(1, iterations + 1):
        done = step
        moved = source @ r.T + t
        dist, idx = tree.query(moved)
        keep = dist <= np.quantile(dist, trim) if trim < 1 else np.ones(len(dist), bool)
        dr, dt, _ = kabsch(moved[keep], target[idx[keep]])
        r, t = dr @ r, dr @ t + dt
        err = float(np.sqrt((dist[keep] ** 2).mean()))
        if abs(previous - err) < tolerance:
            break
        previous = err
    return r, t, done


def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points on triangles (a, b, c) to points p, all (M, 3) (Ericson, Real-Time Collision Detection 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    safe = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v, w = vb / safe, vc / safe
    out = a + ab * v[:, None] + ac * w[:, None]  # inside the face
    with np.errstate(divide="ignore", invalid="ignore"):
        # edges (later assignments take priority over earlier ones, so go from face -> edges -> vertices)
        t_ab = d1 / (d1 - d3)
        m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        out[m] = (a + ab * t_ab[:, None])[m]
        t_ac = d2 / (d2 - d6)
        m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        out[m] = (a + ac * t_ac[:, None])[m]
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        out[m] = (b + (c - b) * t_bc[:, None])[m]
    m = (d1 <= 0) & (d2 <= 0)
    out[m] = a[m]
    m = (d3 >= 0) & (d4 <= d3)
    out[m] = b[m]
    m = (d6 >= 0) & (d5 <= d6)
    out[m] = c[m]
    return out


def point_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 12) -> np.ndarray:
    """Distance of each point to the closest point on the triangle mesh.

    Exact over the triangles incident to the ``k`` nearest vertices (cKDTree), which contain the closest triangle
    for any reasonably regular mesh; `trimesh.proximity` is not used because it needs the optional rtree package.
    """
    points = np.asarray(points, np.float64)
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    # vertex -> incident triangles (padded table)
    order = np.argsort(faces.reshape(-1), kind="stable")
    vertex_of = faces.reshape(-1)[order]
    counts = np.bincount(vertex_of, minlength=len(vertices))
    width = max(int(counts.max()), 1)
    table = np.full((len(vertices), width), -1, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(order)) - starts[vertex_of]
    table[vertex_of, slot] = order // 3
    used = np.flatnonzero(counts > 0)  # vertices of no triangle (e.g. of excluded eyeballs) cannot be closest
    _, near = cKDTree(vertices[used]).query(points, k=min(k, len(used)))
    near = used[near.reshape(len(points), -1)]
    best = np.full(len(points), np.inf)
    for j in range(near.shape[1]):
        for s in range(width):
            tri = table[near[:, j], s]
            ok = tri >= 0
            if not ok.any():
                continue
            f = faces[tri[ok]]
            q = closest_point_on_triangles(points[ok], vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]])
            d = np.linalg.norm(points[ok] - q, axis=1)
            best[ok] = np.minimum(best[ok], d)
    return best


def scan_error(
    pred_vertices_mm: np.ndarray, pred_faces: np.ndarray, scan_points_mm: np.ndarray, nose_tip_mm: np.ndarray,
    pred_region: np.ndarray | None = None, scan_landmarks: np.ndarray | None = None,
    pred_landmarks: np.ndarray | None = None, pred_nose_tip: np.ndarray | None = None, radius_mm: float = 95.0,
    icp_iterations: int = 50, similarity: bool = False,
) -> ScanError:
    """The protocol for one prediction / scan pair (see module docstring). All inputs in mm.

    pred_region: vertex indices of the predicted face region used by ICP (default all vertices).
    scan_landmarks / pred_landmarks: (K, 3) corresponding points for the initial alignment.
    similarity: NoW's alignment — the landmark alignment also solves a scale, applied to the prediction before ICP
    (so a face of the right shape but the wrong size is not penalised). Needs landmarks.
    """
    pred = np.asarray(pred_vertices_mm, np.float64)
    if similarity:
        if scan_landmarks is None or pred_landmarks is None:
            raise ValueError("similarity alignment needs scan_landmarks and pred_landmarks")
        _, _, scale = kabsch(pred_landmarks, scan_landmarks, scale=True)
        pred, pred_landmarks = pred * scale, np.asarray(pred_landmarks, np.float64) * scale
        pred_nose_tip = None if pred_nose_tip is None else np.asarray(pred_nose_tip, np.float64) * scale
    region = pred if pred_region is None else pred[np.asarray(pred_region)]
    gt = crop_scan(scan_points_mm, nose_tip_mm, radius_mm)
    if scan_landmarks is not None and pred_landmarks is not None:
        r0, t0, _ = kabsch(pred_landmarks, scan_landmarks)
    else:
        tip = pred[np.argmax(pred[:, 2])] if pred_nose_tip is None else np.asarray(pred_nose_tip, np.float64)
        r0, t0 = np.eye(3), np.asarray(nose_tip_mm, np.float64) - tip
    # the prediction is cropped like the scan (around its own nose tip) before ICP
    tip_pred = (pred[np.argmax(pred[:, 2])] if pred_nose_tip is None else np.asarray(pred_nose_tip)) @ r0.T + t0
    moved0 = region @ r0.T + t0
    src = region[np.linalg.norm(moved0 - tip_pred, axis=1) <= radius_mm]
    r, t, k = icp(src if len(src) > 100 else region, gt, icp_iterations, init=(r0, t0))
    dist = point_to_surface(gt, pred @ r.T + t, pred_faces)
    return ScanError(float(np.sqrt((dist**2).mean())), float(dist.mean()), float(np.median(dist)), len(gt), k)


# ---------------------------------------------------------------------- datasets
def load_scan(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices (N, 3), faces (F, 3) or None) of a scan file."""
    import trimesh

    loaded = trimesh.load(str(path), process=False, force="mesh")
    faces = np.asarray(loaded.faces) if getattr(loaded, "faces", None) is not None and len(loaded.faces) else None
    return np.asarray(loaded.vertices, np.float64), faces


def load_landmarks(path: str | os.PathLike) -> np.ndarray:
    """(K, 3) landmarks: MeshLab .pp picked points, .npy, or whitespace text."""
    path = Path(path)
    if path.suffix == ".pp":
        root = ET.parse(path).getroot()
        return np.array([[float(p.get(a)) for a in "xyz"] for p in root.iter("point")])
    if path.suffix == ".npy":
        return np.load(path).astype(np.float64).reshape(-1, 3)
    return np.loadtxt(path).reshape(-1, 3)


@dataclass
class ScanPair:
    subject: str
    image: Path
    scan: Path
    landmarks: Path | None


def discover_pairs(root: str | os.PathLike, protocol: str = "micc") -> list[ScanPair]:
    """Image / scan pairs of a dataset folder (layouts in the module docstring)."""
    root = Path(root)
    pairs: list[ScanPair] = []
    if protocol == "now" and (root / "scans").is_dir():
        pictures = root / "iphone_pictures" if (root / "iphone_pictures").is_dir() else root / "images"
        for subject_dir in sorted(p for p in (root / "scans").iterdir() if p.is_dir()):
            scans = sorted(subject_dir.glob("*.obj"))
            if not scans:
                continue
            lmk_dir = root / "scans_lmks_onlypp" / subject_dir.name
            lmks = sorted(lmk_dir.rglob("*.pp")) if lmk_dir.is_dir() else []
            for img in sorted(p for p in (pictures / subject_dir.name).rglob("*") if p.suffix.lower() in
                              PHOTO_EXTENSIONS):
                pairs.append(ScanPair(subject_dir.name, img, scans[0], lmks[0] if lmks else None))
        return pairs
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(subject_dir.rglob("*"))
        scans = [p for p in files if p.suffix.lower() in SCAN_EXTENSIONS]
        if not scans:
            continue
        lmks = [p for p in files if "landmark" in p.name.lower() and p.suffix.lower() in (".txt", ".npy", ".pp")]
        for img in (p for p in files if p.suffix.lower() in PHOTO_EXTENSIONS):
            pairs.append(ScanPair(subject_dir.name, img, scans[0], lmks[0] if lmks else None))
    return pairs


def _scan_nose_tip(points: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    if landmarks is not None:
        if len(landmarks) == 7:
            return landmarks[4]
        if len(landmarks) == 68:
            return landmarks[30]
    # frontal scans: the most protruding point near the centre
    centre = np.median(points, axis=0)
    near = points[np.linalg.norm(points[:, :2] - centre[:2], axis=1) < 40]
    return (near if len(near) else points)[np.argmax((near if len(near) else points)[:, 2])]


def run_protocol(root: str | os.PathLike, reconstructor, protocol: str = "micc", radius_mm: float = 95.0,
                 limit: int | None = None, progress: bool = True) -> dict:
    """Reconstruct every image of a dataset with ``reconstructor`` (`msma.api.Reconstructor`) and score it."""
    from msma.face_model import MODEL_UNITS_TO_MM

    pairs = discover_pairs(root, protocol)[:limit]
    if not pairs:
        raise FileNotFoundError(f"no image / scan pairs found in {root} (layouts: see msma.benchmark3d docstring)")
    model = reconstructor.model
    faces = model.triangles.cpu().numpy()
    region = model.face_vertices.cpu().numpy()
    lm_index = model.landmarks68.cpu().numpy()
    rows, failures = [], []
    scans: dict[Path, tuple] = {}
    try:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc=f"{protocol} scans", disable=not progress)
    except ImportError:  # pragma: no cover
        iterator = pairs
    for pair in iterator:
        try:
            result = reconstructor(str(pair.image), largest_only=True, texture=False)
        except Exception as exc:  # no face, unreadable image
            failures.append({"image": str(pair.image), "error": str(exc)[:200]})
            continue
        face = result.faces[0]
        verts = face.neutral_vertices * MODEL_UNITS_TO_MM if protocol == "now" else face.vertices * MODEL_UNITS_TO_MM
        if pair.scan not in scans:
            points, _ = load_scan(pair.scan)
            lmk = load_landmarks(pair.landmarks) if pair.landmarks else None
            scans[pair.scan] = (points, lmk)
        points, lmk = scans[pair.scan]
        pred_lmk = None
        if lmk is not None:
            index = lm_index[list(NOW_LANDMARKS_IBUG)] if len(lmk) == 7 else lm_index[: len(lmk)]
            pred_lmk = verts[index]
        err = scan_error(verts, faces, points, _scan_nose_tip(points, lmk), pred_region=region,
                         scan_landmarks=lmk if pred_lmk is not None else None, pred_landmarks=pred_lmk,
                         pred_nose_tip=verts[lm_index[30]], radius_mm=radius_mm)
        rows.append({"subject": pair.subject, "image": str(pair.image), **err.as_dict()})
    return summarize(rows, failures, protocol)


def summarize(rows: list[dict], failures: list[dict] | None = None, protocol: str = "") -> dict:
    """Overall + per-subject statistics of `run_protocol` rows."""
    out = {"protocol": protocol, "n_images": len(rows), "failures": failures or []}
    if not rows:
        return out
    for key in ("rmse_mm", "mean_mm", "median_mm"):
        values = np.array([r[key] for r in rows])
        out[key] = {"mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values))}
    subjects: dict[str, list[dict]] = {}
    for r in rows:
        subjects.setdefault(r["subject"], []).append(r)
    out["per_subject"] = {
        s: {"n": len(v), "rmse_mm": float(np.mean([r["rmse_mm"] for r in v])),
            "mean_mm": float(np.mean([r["mean_mm"] for r in v])),
            "median_mm": float(np.mean([r["median_mm"] for r in v]))}
        for s, v in subjects.items()
    }
    subject_rmse = np.array([v["rmse_mm"] for v in out["per_subject"].values()])
    out["subject_rmse_mm"] = {"mean": float(subject_rmse.mean()), "std": float(subject_rmse.std())}
    out["rows"] = rows
    return out
