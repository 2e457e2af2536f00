"""Real photos for self-supervised training: Hugging Face `datasets` -> detect -> align -> pseudo-landmarks -> npz.

    python -m msma.data --source ../shared/data/faces_in_the_wild --out runs/cache/real_fitw.npz
    python -m msma.data --source some-user/faces-dataset --split train --out runs/cache/real_hub.npz   # a hub id

A local folder is read with ``load_dataset("imagefolder", data_dir=...)``, anything else is passed to
``load_dataset`` as a hub id (users; needs network). Images are decoded by `msma.image_io.load_image` (EXIF rotation,
grayscale / alpha, size limits); unreadable images are skipped and counted, never fatal. Every face the offline
detector finds (`msma.landmarks.detect_faces`, largest first, at most ``max_faces`` per photo, faces with an
inter-ocular distance under ``min_interocular`` px skipped) is aligned to ``model.five_point_template()``
(`msma.align.align_face`, scale + translation) and its 68 detector landmarks are mapped into the crop: those are the
pseudo-labels. Detection is slow, so the crops are cached once in an npz (images uint8 (n, 224, 224, 3), landmarks
float32 (n, 68, 2), valid bool (n, 68), dense float32 (n, 478, 2) mediapipe mesh points in crop pixels (NaN where the
detector gave none), source names, stats JSON).

Teacher labels for distillation (issue 10): ``--teacher`` (or ``python -m msma.data --add-teacher CACHE.npz`` on an
existing cache) fits every cached face with the fitter (`msma.api.Reconstructor`, method "fitting", its default
settings, the cached 68 and dense points) and stores its identity, expression, angles and translation as
``teacher_*`` arrays; ``python -m msma train --weights '{"distill_identity": ...}'`` then pulls the network towards
them on real batches.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from msma.image_io import PHOTO_EXTENSIONS

DENSE_POINTS = 478  # mediapipe's face mesh with irises
TEACHER_FIELDS = ("identity", "expression", "angles", "translation")


@dataclass
class LoadStats:
    seen: int = 0
    loaded: int = 0
    unreadable: int = 0
    no_face: int = 0
    faces: int = 0
    small_faces: int = 0
    unreadable_names: list[str] = field(default_factory=list)


def _open_dataset(source: str | os.PathLike, split: str = "train"):
    """A `datasets.Dataset` whose image column is NOT decoded (we decode ourselves, so bad files can be skipped)."""
    from datasets import Image as ImageFeature
    from datasets import load_dataset

    if Path(source).is_dir():
        ds = load_dataset("imagefolder", data_dir=str(source), split=split)
    else:
        ds = load_dataset(str(source), split=split)
    column = "image" if "image" in ds.column_names else next(
        (c for c, f in ds.features.items() if isinstance(f, ImageFeature)), None
    )
    if column is None:
        raise ValueError(f"dataset {source} has no image column (columns: {ds.column_names})")
    return ds.cast_column(column, ImageFeature(decode=False)), column


def iter_images(
    source: str | os.PathLike, split: str = "train", stats: LoadStats | None = None, max_side: int = 2048,
    use_datasets: bool = True,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, uint8 RGB image) for every readable image of a folder / hub dataset; count unreadable ones.

    With ``use_datasets=False`` (or when `datasets` is missing) a local folder is listed directly.
    """
    from msma.image_io import load_image

    stats = stats if stats is not None else LoadStats()
    records: Iterator[tuple[str, object]]
    if use_datasets:
        try:
            ds, column = _open_dataset(source, split)
        except ImportError:
            use_datasets = False
    if use_datasets:

        def gen():
            for i in range(len(ds)):
                try:
                    value = ds[i][column]
                except Exception:  # a broken row
                    yield f"row{i}", None
                    continue
                name = (value or {}).get("path") or f"row{i}"
                data = (value or {}).get("bytes")
                yield str(name), data if data is not None else (value or {}).get("path")

        records = gen()
    else:
        paths = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS)
        records = ((str(p), str(p)) for p in paths)
    for name, payload in records:
        stats.seen += 1
        try:
            if payload is None:
                raise ValueError("no image data")
            image = load_image(payload, max_side=max_side)
        except Exception:
            stats.unreadable += 1
            stats.unreadable_names.append(Path(name).name)
            continue
        stats.loaded += 1
        yield name, image


def build_real_cache(
    source: str | os.PathLike, out_path: str | os.PathLike, model=None, split: str = "train", detector: str = "auto",
    max_faces: int = 8, min_interocular: float = 20.0, max_images: int | None = None, use_datasets: bool = True,
    progress: bool = True,
) -> LoadStats:
    """Detect, align and cache every face of a photo folder / hub dataset (see module docstring)."""
    from msma.align import align_face, transform_points
    from msma.face_model import FaceModel
    from msma.landmarks import detect_faces

    model = model or FaceModel.ict()
    template = model.five_point_template()
    stats = LoadStats()
    crops, landmarks, valid, names, dense = [], [], [], [], []
    items = iter_images(source, split, stats, use_datasets=use_datasets)
    try:
        from tqdm import tqdm

        items = tqdm(items, desc="detect + align", disable=not progress)
    except ImportError:  # pragma: no cover
        pass
    for name, image in items:
        if max_images is not None and stats.loaded > max_images:
            break
        try:
            faces = detect_faces(image, detector=detector)
        except Exception:
            faces = []
        if not faces:
            stats.no_face += 1
            continue
        for face in faces[:max_faces]:
            lm = np.asarray(face.landmarks68, np.float64)
            if np.linalg.norm(lm[45] - lm[36]) < min_interocular:
                stats.small_faces += 1
                continue
            try:
                aligned = align_face(image, face.five_points(), template=template, size=model.camera.image_size)
            except ValueError:
                continue
            crop_lm = transform_points(lm, aligned.matrix)
            dense.append(np.full((DENSE_POINTS, 2), np.nan, np.float32) if face.dense is None
                         else transform_points(np.asarray(face.dense, np.float64)[:DENSE_POINTS, :2],
                                               aligned.matrix).astype(np.float32))
            crops.append(aligned.image)
            landmarks.append(crop_lm.astype(np.float32))
            size = model.camera.image_size
            valid.append(((crop_lm >= 0) & (crop_lm < size)).all(1))
            names.append(Path(name).name)
            stats.faces += 1
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    size = model.camera.image_size
    np.savez_compressed(
        out_path,
        images=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        landmarks=np.stack(landmarks) if landmarks else np.zeros((0, 68, 2), np.float32),
        valid=np.stack(valid) if valid else np.zeros((0, 68), bool),
        dense=np.stack(dense) if dense else np.zeros((0, DENSE_POINTS, 2), np.float32),
        names=np.array(names),
        stats=np.array(json.dumps(asdict(stats))),
    )
    return stats


def add_teacher_labels(cache_path: str | os.PathLike, reconstructor=None, batch: int = 8,
                       progress: bool = True) -> int:
    """Fit every face of a `build_real_cache` npz with the fitter and store its coefficients (``teacher_identity``,
    ``teacher_expression``, ``teacher_angles``, ``teacher_translation``) in the file. Returns the number of faces."""
    from msma.api import Reconstructor

    rec = reconstructor or Reconstructor(method="fitting")
    path = Path(cache_path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(arrays["images"])
    dense = arrays.get("dense")
    teacher: dict[str, list] = {k: [] for k in TEACHER_FIELDS}
    starts = range(0, n, batch)
    try:
        from tqdm import tqdm

        starts = tqdm(starts, desc="teacher fits", disable=not progress)
    except ImportError:  # pragma: no cover
        pass
    for start in starts:
        stop = min(n, start + batch)
        crop_dense = None if dense is None or np.isnan(dense[start:stop]).all() else dense[start:stop]
        coeffs = rec.estimate(arrays["images"][start:stop], arrays["landmarks"][start:stop], method="fitting",
                              crop_dense=crop_dense)
        for k in TEACHER_FIELDS:
            teacher[k].append(getattr(coeffs, k).detach().cpu().numpy().astype(np.float32))
    for k in TEACHER_FIELDS:
        arrays[f"teacher_{k}"] = np.concatenate(teacher[k]) if n else np.zeros((0, 1), np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return n


class RealFaceDataset(torch.utils.data.Dataset):
    """Items of a `build_real_cache` npz: image (3, 224, 224) float, landmarks (68, 2) crop px, valid (68,), and the
    fitter's coefficients ``teacher_identity`` / ``teacher_expression`` / ``teacher_angles`` /
    ``teacher_translation`` when the cache has teacher labels (`add_teacher_labels`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        with np.load(path) as z:
            self.images = z["images"]
            self.landmarks = z["landmarks"].astype(np.float32)
            self.valid = z["valid"].astype(bool)
            self.names = [str(n) for n in z["names"]]
            self.stats = json.loads(str(z["stats"])) if "stats" in z.files else {}
            self.teacher = {k: z[f"teacher_{k}"].astype(np.float32) for k in TEACHER_FIELDS
                            if f"teacher_{k}" in z.files}

    @property
    def has_teacher(self) -> bool:
        return len(self.teacher) == len(TEACHER_FIELDS)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "image": torch.from_numpy(self.images[i]).permute(2, 0, 1).float() / 255.0,
            "landmarks": torch.from_numpy(self.landmarks[i]),
            "valid": torch.from_numpy(self.valid[i]),
        }
        if self.has_teacher:
            item.update({f"teacher_{k}": torch.from_numpy(v[i]) for k, v in self.teacher.items()})
        return item


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Detect + align real photos into a training cache (npz).")
    parser.add_argument("--source", nargs="+", help="image folder(s) or hub dataset id(s)")
    parser.add_argument("--out", help="cache npz to write")
    parser.add_argument("--teacher", action="store_true", help="also store the fitter's coefficients of every face")
    parser.add_argument("--add-teacher", metavar="CACHE", help="add teacher labels to an existing cache and exit")
    parser.add_argument("--split", default="train")
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--max-faces", type=int, default=8)
    parser.add_argument("--min-interocular", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.add_teacher:
        print(f"{args.add_teacher}: teacher labels for {add_teacher_labels(args.add_teacher)} faces")
        return
    if not args.source or not args.out:
        parser.error("--source and --out are required (or --add-teacher CACHE)")
    parts, all_stats = [], []
    for i, source in enumerate(args.source):
        path = Path(args.out) if len(args.source) == 1 else Path(args.out).with_suffix(f".part{i}.npz")
        all_stats.append(asdict(build_real_cache(source, path, split=args.split, detector=args.detector,
                                                 max_faces=args.max_faces, min_interocular=args.min_interocular)))
        parts.append(path)
    if len(parts) > 1:  # merge
        arrays: dict[str, list] = {}
        for p in parts:
            with np.load(p) as z:
                for k in ("images", "landmarks", "valid", "dense", "names"):
                    arrays.setdefault(k, []).append(z[k])
        np.savez_compressed(args.out, **{k: np.concatenate(v) for k, v in arrays.items()},
                            stats=np.array(json.dumps(all_stats)))
        for p in parts:
            p.unlink()
    for source, s in zip(args.source, all_stats):
        print(source, {k: v for k, v in s.items() if k != "unreadable_names"}, "unreadable:", s["unreadable_names"])
    if args.teacher:
        print(f"{args.out}: teacher labels for {add_teacher_labels(args.out)} faces")


if __name__ == "__main__":
    main()
