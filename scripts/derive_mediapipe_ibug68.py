"""Derive the mediapipe 478-point mesh -> iBUG 68-point table: msma/data/mediapipe_to_ibug68.npz.

    .venv/bin/python scripts/derive_mediapipe_ibug68.py                       # the committed table (~30 s)
    .venv/bin/python scripts/derive_mediapipe_ibug68.py --xml-dir ../shared/data/dlib_faces --out /tmp/t.npz
                                                    # the same procedure on the evaluation faces (a check only)

Data (default; no evaluation data): every photo of ../shared/data/faces_in_the_wild and ../shared/data/old_photos
(dev folders). Labels are dlib's 68-point predictor on dlib's HOG boxes (`msma.landmarks.detectors.dlib`), the same
convention as the pseudo-labels of ../shared/data/dlib_faces, which stays the held-out set NME is reported on.
With --xml-dir the labels and boxes are read from imglab XML files instead (how the previous table was made).

Procedure (msma.landmarks.mapping describes the result):
  1. The face mesh runs on a 2x crop around every labelled face (`mesh_in_box`, as the mediapipe detector does);
     for every iBUG point k and mesh vertex v (0-467, no iris points) the mean distance |mesh_v - label_k| /
     inter-ocular (36-45) is measured over the faces with inter-ocular >= 20 px.
  2. The mesh's left/right mirror map: the mesh runs again on the horizontally flipped photo; vertex v there, flipped
     back, lands on the original mesh's vertex m(v) (nearest in mean normalised distance). Each mirror pair of iBUG
     points (k, k') gets the vertex pair (v, m(v)) with the lowest summed error, each midline point (8, 27-30, 33,
     51, 57, 62, 66) the best vertex with m(v) = v, so the table is exactly symmetric under m.
  3. Jaw contour: the canonical frontal mesh is the similarity-Procrustes mean of the measured meshes and their
     mirror images (the flipped-photo meshes), x right, y down, centred and of unit RMS over the 51 non-jaw table
     vertices (the anchors). Each jaw point's outward contour normal is the jaw polyline's normal there; its
     candidates are its fixed vertex plus up to two vertices inward of it along the normal (within JAW_DEPTH of it,
     at most JAW_LATERAL off the normal line, nearest the line first). `mesh_to_68` uses the candidate projecting
     furthest along the normal, mapped into the photo by an affine fit of the anchors.
The script prints the table's NME (fixed and with the jaw contour) on the data it was derived on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma.image_io import load_image  # noqa: E402
from msma.landmarks.detectors import dlib as dlib_plugin  # noqa: E402
from msma.landmarks.detectors.mediapipe import mesh_in_box  # noqa: E402

OUT = ROOT / "msma" / "data" / "mediapipe_to_ibug68.npz"
DEV_DIRS = (ROOT.parent / "shared" / "data" / "faces_in_the_wild", ROOT.parent / "shared" / "data" / "old_photos")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
MIN_IOD_PX = 20.0
N_MESH = 468  # candidate vertices: the face mesh without the 10 iris points (the table must work on 468-point meshes)
JAW_DEPTH = 0.3  # canonical units (unit RMS over the anchors): how far inward jaw candidates may lie
JAW_LATERAL = 0.16  # canonical units: how far off the normal line (both: the extent of the previous lists)
JAW_MAX_CANDIDATES = 3

# iBUG index of each point's left/right mirror partner.
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65],
    dtype=np.int64,
)


# ---------------------------------------------------------------------- data
def dev_faces(folders: list[Path]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(photo path, HOG box, dlib's 68 points) for every face dlib finds in the photos of ``folders``."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"photo folder not found: {folder}")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            photo = load_image(path)
            for box, _ in dlib_plugin.boxes(photo):
                out.append((str(path), box, dlib_plugin.shape(photo, box)))
    return out


def xml_faces(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from msma.evaluate import read_dlib_xml

    xmls = sorted(folder.glob("*.xml"))
    if not xmls:
        raise SystemExit(f"no imglab XML files in {folder}")
    return [(str(folder / f), box, lm) for xml in xmls for f, box, lm in read_dlib_xml(xml)]


def measure(faces: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Meshes on every labelled face and on its mirror image (flipped back into the photo's frame)."""
    meshes, flipped, flipped_raw, labels, files = [], [], [], [], []
    cache: dict[str, np.ndarray] = {}
    for path, box, lm in faces:
        photo = cache.setdefault(path, load_image(path))
        if len(cache) > 1:
            cache = {path: photo}
        w = photo.shape[1]
        mesh = mesh_in_box(photo, box)
        fbox = np.array([w - box[2], box[1], w - box[0], box[3]])
        fmesh = mesh_in_box(np.ascontiguousarray(photo[:, ::-1]), fbox)
        if mesh is None or fmesh is None:
            continue
        raw = fmesh[0][:N_MESH]
        meshes.append(mesh[0][:N_MESH])
        flipped_raw.append(raw)
        flipped.append(np.c_[w - raw[:, 0], raw[:, 1]])
        labels.append(lm)
        files.append(path)
    return {"mesh": np.array(meshes), "flipped": np.array(flipped), "flipped_raw": np.array(flipped_raw),
            "labels": np.array(labels), "files": np.array(files)}


# ---------------------------------------------------------------------- derivation
def interocular(labels: np.ndarray) -> np.ndarray:
    return np.linalg.norm(labels[:, 36] - labels[:, 45], axis=-1)


def mean_distance(a: np.ndarray, b: np.ndarray, iod: np.ndarray) -> np.ndarray:
    """(F, A, 2), (F, B, 2) -> (A, B) mean over faces of |a_i - b_j| / iod."""
    return np.mean(np.linalg.norm(a[:, :, None] - b[:, None], axis=-1) / iod[:, None, None], axis=0)


def mirror_map(mesh: np.ndarray, flipped: np.ndarray, iod: np.ndarray) -> np.ndarray:
    """m (N_MESH,): the flipped-photo mesh's vertex v lands on the photo mesh's vertex m[v]."""
    return np.argmin(mean_distance(flipped, mesh, iod), axis=1)


def symmetric_table(err: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """err (68, N_MESH) mean normalised distances, mirror (N_MESH,) -> (68,) table, symmetric under the mirror map."""
    table = np.full(68, -1, np.int64)
    used: set[int] = set()
    self_sym = np.flatnonzero(mirror == np.arange(len(mirror)))
    # assign in order of confidence (lowest error first) so a vertex two points want goes to the better fit
    order = sorted(range(68), key=lambda k: err[k].min())
    for k in order:
        if table[k] >= 0:
            continue
        kk = IBUG68_MIRROR[k]
        if kk == k:
            cost = np.full(err.shape[1], np.inf)
            cost[self_sym] = err[k, self_sym]
        else:
            cost = err[k] + err[kk, mirror]
            cost[mirror == np.arange(len(mirror))] = np.inf
        for v in list(used):
            cost[v] = np.inf
        cost[np.isin(mirror, list(used))] = np.inf
        v = int(np.argmin(cost))
        if not np.isfinite(cost[v]):
            raise RuntimeError(f"no vertex left for iBUG point {k}")
        table[k] = v
        table[kk] = mirror[v]
        used.update({v, int(mirror[v])})
    return table


def procrustes_mean(shapes: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Similarity-Procrustes mean (N, 2) of (S, N, 2) shapes (reflections excluded)."""
    x = shapes - shapes.mean(1, keepdims=True)
    x = x / np.sqrt((x**2).sum((1, 2), keepdims=True))
    mean = x[0]
    for _ in range(iterations):
        aligned = []
        for s in x:
            # optimal rotation + scale of s onto mean (complex-number form of 2D similarity)
            zs, zm = s[:, 0] + 1j * s[:, 1], mean[:, 0] + 1j * mean[:, 1]
            c = np.vdot(zs, zm) / np.vdot(zs, zs)
            z = c * zs
            aligned.append(np.c_[z.real, z.imag])
        new = np.mean(aligned, axis=0)
        new /= np.sqrt((new**2).sum())
        if np.abs(new - mean).max() < 1e-10:
            break
        mean = new
    return mean


def canonical_frame(mean: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rotate / scale the mean mesh: x right, y down (brows above the mouth), centred and unit RMS on the anchors."""
    anchors = table[17:]
    right, left = table[[42, 45, 22, 26]], table[[39, 36, 21, 17]]  # subject's left = image right
    axis = (mean[right] - mean[left]).mean(0)
    a = np.arctan2(axis[1], axis[0])
    rot = np.array([[np.cos(-a), -np.sin(-a)], [np.sin(-a), np.cos(-a)]])
    c = (mean - mean[anchors].mean(0)) @ rot.T
    if c[table[8], 1] < c[table[27], 1]:  # chin above the nose bridge: turn it upright
        c[:, 1] *= -1
    c -= c[anchors].mean(0)
    return c / np.sqrt((c[anchors] ** 2).sum(1).mean())


def jaw_normals(canon: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(17, 2) outward normal of the jaw polyline (fixed jaw vertices in the canonical frame) at each jaw point."""
    p = canon[table[:17]]
    tangent = np.gradient(p, axis=0)  # central differences inside, one-sided at the ends
    normal = np.c_[-tangent[:, 1], tangent[:, 0]]  # image y down: the jaw runs left ear -> chin -> right ear
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    centre = canon[table[17:]].mean(0)
    flip = np.sum((p - centre) * normal, axis=1) < 0
    normal[flip] *= -1
    return normal


def jaw_candidates(canon: np.ndarray, table: np.ndarray, normals: np.ndarray) -> dict[int, tuple[int, ...]]:
    """Jaw point -> its fixed vertex and the vertices just inward of it along the outward normal."""
    out = {}
    excluded = set(table[17:].tolist())
    for k in range(17):
        if k == 8:  # the chin is on the midline, its silhouette point does not move sideways
            continue
        v = int(table[k])
        d = canon[:N_MESH] - canon[v]
        depth = -(d @ normals[k])
        lateral = np.abs(d @ np.array([-normals[k, 1], normals[k, 0]]))
        ok = (depth > 1e-6) & (depth <= JAW_DEPTH) & (lateral <= JAW_LATERAL)
        ok[list(excluded)] = False
        inward = np.flatnonzero(ok)
        inward = inward[np.argsort(lateral[inward])][: JAW_MAX_CANDIDATES - 1]
        out[k] = tuple(sorted({v, *inward.tolist()}))
    return out


def symmetrise(canon: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Average each vertex with its mirror partner's reflected position (x -> -x)."""
    reflected = canon[mirror] * np.array([-1.0, 1.0])
    return (canon + reflected) / 2


def derive(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    iod = interocular(data["labels"])
    keep = iod >= MIN_IOD_PX
    mesh, flipped, labels, iod = data["mesh"][keep], data["flipped"][keep], data["labels"][keep], iod[keep]
    mirror = mirror_map(mesh, flipped, iod)
    err = mean_distance(labels, mesh, iod)  # (68, N_MESH)
    table = symmetric_table(err, mirror)
    shapes = np.concatenate([data["mesh"][keep], data["flipped_raw"][keep]])
    canon = canonical_frame(procrustes_mean(shapes), table)
    canon = symmetrise(canon, mirror)
    canon = canon - canon[table[17:]].mean(0)
    canon /= np.sqrt((canon[table[17:]] ** 2).sum(1).mean())
    normals = jaw_normals(canon, table)
    cands = jaw_candidates(canon, table, normals)
    packed = np.full((17, JAW_MAX_CANDIDATES), -1, np.int64)
    for k, c in cands.items():
        packed[k, : len(c)] = c
    return {"mediapipe_to_ibug68": table, "ibug68_mirror": IBUG68_MIRROR, "jaw_candidates": packed,
            "anchor_canonical": canon[table[17:]], "jaw_normals": normals, "mesh_mirror": mirror,
            "n_faces": np.array(int(keep.sum()))}


def table_nme(data: dict[str, np.ndarray], tables: dict[str, np.ndarray]) -> dict[str, float]:
    """NME (inter-ocular, faces with iod >= MIN_IOD_PX) of mesh_to_68 with the given table arrays, fixed and contour."""
    import msma.landmarks.mapping as mapping

    saved = {k: getattr(mapping, k) for k in ("MEDIAPIPE_TO_IBUG68", "JAW_CANDIDATES", "_ANCHOR_CANONICAL",
                                                  "_JAW_NORMALS")}
    try:
        mapping.MEDIAPIPE_TO_IBUG68 = tables["mediapipe_to_ibug68"]
        mapping.JAW_CANDIDATES = {k: tuple(int(c) for c in row if c >= 0)
                                  for k, row in enumerate(tables["jaw_candidates"]) if (row >= 0).any()}
        mapping._ANCHOR_CANONICAL = tables["anchor_canonical"]
        mapping._JAW_NORMALS = tables["jaw_normals"]
        iod = interocular(data["labels"])
        keep = iod >= MIN_IOD_PX
        out = {}
        for contour in (False, True):
            pred = np.array([mapping.mesh_to_68(m, contour=contour) for m in data["mesh"][keep]])
            e = np.linalg.norm(pred - data["labels"][keep], axis=-1) / iod[keep, None]
            name = "contour" if contour else "fixed"
            out[f"{name}_all"] = float(e.mean())
            out[f"{name}_jaw"] = float(e[:, :17].mean())
        return out
    finally:
        for k, v in saved.items():
            setattr(mapping, k, v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", nargs="*", type=Path, default=list(DEV_DIRS),
                        help="photo folders labelled by dlib's predictor (default: the dev folders)")
    parser.add_argument("--xml-dir", type=Path, default=None, help="read labels and boxes from imglab XML instead")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cache", type=Path, default=None, help="npz of the measured meshes (reused if present)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    if args.cache is not None and args.cache.is_file():
        data = dict(np.load(args.cache))
    else:
        faces = xml_faces(args.xml_dir) if args.xml_dir else dev_faces(args.photos)
        data = measure(faces)
        if args.cache is not None:
            np.savez(args.cache, **data)
    if len(data["mesh"]) == 0:
        raise SystemExit("no face with both labels and a face mesh")
    source = str(args.xml_dir) if args.xml_dir else " ".join(str(p) for p in args.photos)
    tables = derive(data)
    tables["source"] = np.array(("imglab XML labels in " if args.xml_dir else "dlib predictor labels on ")
                                + source.replace(str(ROOT.parent) + "/", "../"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **tables)
    scores = table_nme(data, tables)
    print(f"{int(tables['n_faces'])} faces (iod >= {MIN_IOD_PX:.0f} px) of {len(data['mesh'])} meshed, "
          f"{time.perf_counter() - t0:.0f} s -> {args.out}")
    print("NME on these faces: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
