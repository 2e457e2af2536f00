"""Import photos (a folder or a Hugging Face dataset) into a project, with their existing labels.

* Images are content-addressed: the SHA-256 of the file bytes de-duplicates within and across imports; files are
  hard-linked (or copied) into ``<project>/images/`` so the project does not depend on the source folder.
* Labels found next to the photos are imported as-is: iBUG ``.pts`` (``photo.pts``, or ``photo_<k>.pts`` per face),
  dlib imglab XML and COCO keypoints JSON anywhere in the folder.
* Refused: annotation references or symlinks that resolve outside the imported folder, absolute / ``..`` names in
  datasets. Skipped and listed: unreadable images. Malformed label files: listed as ``file:line: message``.
* Optional pre-labelling of images without labels (see :mod:`annotate.prelabel`).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from annotate.formats import (
    FormatError,
    ImageLabels,
    check_split,
    check_text,
    detect_format,
    read_coco,
    read_dlib_xml,
    read_pts,
)
from annotate.prelabel import Prelabeller, get_prelabeller, prelabel_image
from annotate.skeleton import OUTSIDE
from annotate.store import Store, StoreError, ValidationError, validate_points
from msma.image_io import PHOTO_EXTENSIONS as IMAGE_EXTS  # every photo format the app reads

LABEL_EXTS = (".xml", ".json", ".pts")


class PathEscapeError(ValueError):
    """A path in an import resolves outside the folder being imported."""


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): files that are neither photo nor label
    errors: list[str] = field(default_factory=list)  # malformed label files / rejected faces, "file:line: msg"
    warnings: list[str] = field(default_factory=list)
    faces_imported: int = 0
    faces_prelabelled: int = 0
    images_prelabelled: int = 0
    seconds: float = 0.0
    prelabel_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.errors or self.refused or self.unreadable)

    def summary(self) -> str:
        lines = [f"added {len(self.added)} image(s), {self.faces_imported} labelled face(s) imported, "
                 f"{self.faces_prelabelled} face(s) pre-labelled on {self.images_prelabelled} image(s), "
                 f"{len(self.duplicates)} duplicate(s), {len(self.unreadable)} unreadable, "
                 f"{len(self.refused)} refused, {len(self.errors)} error(s) in {self.seconds:.1f} s"]
        for name, why in self.unreadable:
            lines.append(f"  unreadable: {name}: {why}")
        for name, why in self.refused:
            lines.append(f"  refused: {name}: {why}")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} file(s): " + skipped_summary(self.skipped))
            lines += [f"  skipped: {name}: {why}" for name, why in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... {len(self.skipped) - 20} more skipped")
        for err in self.errors:
            lines.append(f"  error: {err}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        for name, why in self.duplicates[:20]:
            lines.append(f"  duplicate: {name}: {why}")
        if len(self.duplicates) > 20:
            lines.append(f"  ... {len(self.duplicates) - 20} more duplicates")
        return "\n".join(lines)


def skipped_summary(skipped: list[tuple[str, str]]) -> str:
    """'3 .txt (not a photo or label file), 1 .pts (no photo of that name)'."""
    counts: dict[tuple[str, str], int] = {}
    for name, why in skipped:
        key = (Path(name).suffix.lower() or Path(name).name, why)
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {ext} ({why})" for (ext, why), n in sorted(counts.items(), key=lambda kv: -kv[1]))


def inside(root: Path | Sequence[Path], path: Path) -> Path:
    """``path`` resolved (symlinks followed); PathEscapeError when it is not under ``root`` (or any of several roots).

    Every path an import reads (photos, label files, the images their labels name, dataset files) goes through
    here before it is opened."""
    roots = [Path(root)] if isinstance(root, (str, os.PathLike)) else [Path(r) for r in root]
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, NUL bytes, names too long
        raise PathEscapeError(f"{str(path)[:200]!r} cannot be resolved ({exc})") from None
    for r in roots:
        try:
            resolved.relative_to(r.resolve())
            return resolved
        except ValueError:
            continue
    where = roots[0] if len(roots) == 1 else "the allowed folders"
    raise PathEscapeError(f"{str(path)[:200]} resolves to {resolved}, outside {where}")


def safe_name(name: str) -> str:
    """A relative POSIX name without '..' (used for export paths); PathEscapeError otherwise."""
    text = str(name).replace("\\", "/")
    p = PurePosixPath(text)
    if not text or p.is_absolute() or re.match(r"^[A-Za-z]:", text) or ".." in p.parts:
        raise PathEscapeError(f"image name {name!r} is absolute or climbs out with '..'")
    return str(PurePosixPath(*[part for part in p.parts if part not in ("", ".")]))


def _decode(data: bytes, name: str) -> tuple[np.ndarray, int, int, Callable[[np.ndarray], np.ndarray] | None]:
    """bytes -> (RGB array for pre-labelling, original width, height, map from array pixels to original pixels)."""
    try:
        from msma.image_io import load_image_with_scale
    except ImportError:  # pragma: no cover - fallback when the core package is absent
        from PIL import Image, ImageOps

        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = ImageOps.exif_transpose(im).convert("RGB")
            arr = np.asarray(im)
        return arr, arr.shape[1], arr.shape[0], None
    loaded = load_image_with_scale(data, max_side=4096)
    loaded.name = name
    w, h = loaded.original_size
    return loaded.image, w, h, (None if loaded.scale == 1.0 else loaded.to_original)


def _unreadable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OSError, ValueError, SyntaxError]
    try:
        from msma.image_io import ImageLoadError

        types.append(ImageLoadError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


class _Ingest:
    """Shared logic of folder and dataset imports."""

    def __init__(self, store: Store, project: Any, user: str | None, prelabeller: Prelabeller | None,
                 outside: str, update: bool, report: ImportReport, link: bool = True):
        self.store, self.user, self.prelabeller = store, user, prelabeller
        self.project = store.get_project(project)
        self.outside, self.update, self.report, self.link = outside, update, report, link
        self.seen: dict[str, str] = {}  # sha -> name (this run)

    def add(self, name: str, data: bytes | None, src_path: Path | None, suffix: str, labels: ImageLabels | None,
            split: str | None) -> int | None:
        import hashlib

        store, report = self.store, self.report
        if data is None:
            try:
                data = src_path.read_bytes()  # type: ignore[union-attr]
            except OSError as exc:
                report.unreadable.append((name, f"cannot read the file ({exc.strerror or exc})"))
                return None
        sha = hashlib.sha256(data).hexdigest()
        if sha in self.seen:
            report.duplicates.append((name, f"same content as {self.seen[sha]} (skipped)"))
            return None
        try:
            image, width, height, to_original = _decode(data, name)
        except _unreadable_types() as exc:
            report.unreadable.append((name, str(exc)))
            return None
        self.seen[sha] = name
        existing = store.find_image(self.project, sha)
        rel = Path("images") / sha[:2] / f"{sha}{suffix.lower()}"
        target = store.root / rel
        if existing is None and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            if src_path is not None and self.link:
                try:
                    os.link(src_path, tmp)
                except OSError:
                    shutil.copyfile(src_path, tmp)
            else:
                tmp.write_bytes(data)
            os.replace(tmp, target)
        try:
            with store.transaction():  # the image row and its labels: both or neither
                image_id, created = store.add_image(self.project, sha256=sha, path=rel.as_posix(), name=name,
                                                    width=width, height=height, nbytes=len(data),
                                                    split=split or "train", user=self.user)
                if labels is not None and labels.faces:
                    self._add_labels(image_id, name, labels, width, height, created)
        except ValidationError as exc:
            report.errors.append(f"{name}: not imported: {exc}")
            return None
        if created:
            report.added.append(name)
        else:
            report.duplicates.append((name, f"already in the project as {existing.name if existing else '?'}"))
        labelled = labels is not None and bool(labels.faces)
        if not labelled and self.prelabeller is not None and not store.get_annotations(image_id,
                                                                                        include_deleted=True):
            t0 = time.perf_counter()
            n = prelabel_image(store, image_id, image, self.prelabeller, to_original)
            report.prelabel_seconds += time.perf_counter() - t0
            report.faces_prelabelled += n
            report.images_prelabelled += 1
        return image_id

    def _add_labels(self, image_id: int, name: str, labels: ImageLabels, width: int, height: int,
                    created: bool) -> None:
        store, report = self.store, self.report
        if (labels.width and labels.width != width) or (labels.height and labels.height != height):
            report.warnings.append(f"{labels.source}: {name} is {width}x{height}, the label file says "
                                   f"{labels.width}x{labels.height}")
        current = store.revisions(image_id)
        if current and not self.update:
            report.warnings.append(f"{labels.source}: {name} already has annotations; labels not re-imported "
                                   "(use --update to add them as new revisions)")
            return
        for k, face in enumerate(labels.faces):
            face_index = int(face.meta.get("face", k))
            vis = face.visibility.copy()
            if self.outside == "flag":
                x, y = face.points[:, 0], face.points[:, 1]
                with np.errstate(invalid="ignore"):
                    out = ~((x >= 0) & (x <= width) & (y >= 0) & (y <= height))
                vis[out] = OUTSIDE
            where = face.source or labels.source
            if not (vis != OUTSIDE).any():
                report.errors.append(f"{where}: face {k} of {name} has no labelled point; not imported")
                continue
            try:
                validate_points(face.points, vis, width, height)
            except ValidationError as exc:
                report.errors.append(f"{where}: face {k} of {name} rejected: {exc}")
                continue
            meta = {k2: v for k2, v in face.meta.items() if k2 != "face"}
            try:
                store.save(image_id, face.points, vis, base_revision=current.get(face_index, 0), user=self.user,
                           face=face_index, box=face.box, source="import", meta=meta or None)
            except StoreError as exc:
                report.errors.append(f"{where}: face {k} of {name} not saved: {exc}")
                continue
            report.faces_imported += 1


def _collect_labels(root: Path, files: Iterable[Path], report: ImportReport) -> dict[Path, ImageLabels]:
    """Parse every dlib XML / COCO JSON under root; map resolved image path -> labels."""
    by_image: dict[Path, ImageLabels] = {}
    for f in files:
        try:
            fmt = detect_format(f)
            if fmt not in ("dlib", "coco"):
                report.skipped.append((str(f.relative_to(root)), "not a dlib XML or COCO keypoints file"))
                continue
            images = read_dlib_xml(f) if fmt == "dlib" else read_coco(f)
        except FormatError as exc:  # one bad file is reported; the others still import
            report.errors.append(str(exc))
            continue
        except OSError as exc:
            report.errors.append(f"{f}: cannot read ({exc.strerror or exc})")
            continue
        split = None
        stem = f.stem.lower()
        if "test" in stem:
            split = "test"
        elif "train" in stem:
            split = "train"
        elif "val" in stem:
            split = "validation"
        for labels in images:
            labels.split = labels.split or split
            candidates = [f.parent / labels.file]
            if fmt == "coco":
                candidates += [root / labels.file, root / "images" / labels.file]
            target = None
            for cand in candidates:
                try:
                    resolved = inside(root, cand)
                except PathEscapeError as exc:
                    report.refused.append((f"{labels.source} {labels.file}", str(exc)))
                    target = False
                    break
                if resolved.is_file():
                    target = resolved
                    break
            if target is False:
                continue
            if target is None:
                report.errors.append(f"{labels.source}: image {labels.file!r} not found")
                continue
            if target in by_image:
                report.warnings.append(f"{labels.source}: {labels.file} is also labelled in "
                                       f"{by_image[target].source}; the first labels are used")
                continue
            by_image[target] = labels
    return by_image


def _pts_labels(root: Path, path: Path, image_stems: set[Path], report: ImportReport) -> ImageLabels | None:
    stem = path.with_suffix("")
    files = []
    if stem.with_suffix(".pts").is_file():
        files.append((0, stem.with_suffix(".pts")))
    for cand in sorted(path.parent.glob(f"{glob_escape(stem.name)}_*.pts")):
        m = re.fullmatch(re.escape(stem.name) + r"_(\d+)\.pts", cand.name)
        if m and cand.with_suffix("") not in image_stems:
            files.append((int(m.group(1)), cand))
    if not files:
        return None
    labels = ImageLabels(file=path.name, source=str(files[0][1]))
    for k, f in sorted(files):
        try:
            face = read_pts(inside(root, f))
        except PathEscapeError as exc:
            report.refused.append((str(f.relative_to(root)), str(exc)))
            continue
        except FormatError as exc:
            report.errors.append(str(exc))
            continue
        except OSError as exc:
            report.errors.append(f"{f}: cannot read ({exc.strerror or exc})")
            continue
        face.meta["face"] = k
        labels.faces.append(face)
    return labels


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def import_folder(store: Store, folder: str | os.PathLike, *, project: Any = None, user: str | None = None,
                  split: str | None = None, prelabeller: Any = None, outside: str = "reject", update: bool = False,
                  progress: bool = False) -> ImportReport:
    """Import every image under ``folder`` (recursively) with the labels found there."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if split is not None and check_split(split):
        raise ValueError(f"--split {check_split(split)}")
    root = root.resolve()
    report = ImportReport()
    t0 = time.perf_counter()
    ingest = _Ingest(store, project, user, get_prelabeller(prelabeller), outside, update, report)
    images: list[Path] = []
    label_files: list[Path] = []
    pts_files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            suffix = p.suffix.lower()
            if suffix == ".pts":
                pts_files.append(p)
            elif suffix not in IMAGE_EXTS and suffix not in LABEL_EXTS:
                why = "hidden file" if fn.startswith(".") else "not a photo format the app reads or a label file"
                report.skipped.append((str(p.relative_to(root)), why))
            if suffix in IMAGE_EXTS or suffix in (".xml", ".json"):
                try:
                    inside(root, p)
                except PathEscapeError as exc:
                    report.refused.append((str(p.relative_to(root)), str(exc)))
                    continue
                (images if suffix in IMAGE_EXTS else label_files).append(p)
    labels = _collect_labels(root, label_files, report)
    stems = {p.with_suffix("") for p in images}
    for f in pts_files:  # photo.pts or photo_<k>.pts; anything else has no photo to go with
        stem = f.with_suffix("")
        base = re.sub(r"_\d+$", "", stem.name)
        if stem not in stems and stem.with_name(base) not in stems:
            report.skipped.append((str(f.relative_to(root)), "no photo of that name"))
    iterator: Iterable[Path] = images
    if progress:
        from tqdm import tqdm

        iterator = tqdm(images, desc="import", unit="img")
    for p in iterator:
        name = p.relative_to(root).as_posix()
        lab = labels.get(p.resolve()) or _pts_labels(root, p, stems, report)
        ingest.add(name, None, p.resolve(), p.suffix, lab, split or (lab.split if lab else None))
    report.seconds = time.perf_counter() - t0
    return report


SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # what datasets itself allows as a split name


def check_saved_dataset(folder: Path) -> None:
    """Refuse a ``save_to_disk`` folder whose JSON names files outside it (split names, ``_data_files``) before
    ``datasets`` opens anything; FormatError naming the file otherwise."""
    from annotate.formats import _json_with_lines

    folder = folder.resolve()

    def check_split(split_dir: Path) -> None:
        state_file = inside(folder, split_dir / "state.json")
        state = _json_with_lines(state_file)
        files = state.get("_data_files") if isinstance(state, dict) else None
        if not isinstance(files, list) or not files:
            raise FormatError(state_file, 1, "'_data_files' must be a non-empty list")
        for entry in files:
            name = entry.get("filename") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name or check_text(name):
                raise FormatError(state_file, getattr(entry, "line", 1), "each data file needs a 'filename' string")
            try:
                inside(split_dir, split_dir / name)
            except PathEscapeError as exc:
                raise FormatError(state_file, getattr(entry, "line", 1), str(exc)) from None

    if (folder / "dataset_dict.json").is_file():
        dd_file = inside(folder, folder / "dataset_dict.json")
        dd = _json_with_lines(dd_file)
        splits = dd.get("splits") if isinstance(dd, dict) else None
        if not isinstance(splits, list) or not splits:
            raise FormatError(dd_file, 1, "'splits' must be a non-empty list of split names")
        for split in splits:
            if not isinstance(split, str) or not SPLIT_NAME.match(split):
                raise FormatError(dd_file, 1, f"split name {split!r:.60} is not a plain name")
            check_split(folder / split)
    else:
        check_split(folder)


def _load_hf(source: Any) -> tuple[dict[str, Any], list[Path]]:
    """(splits, folders whose files a path-only image may name)."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        return dict(source), []
    if isinstance(source, datasets.Dataset):
        return {"train": source}, []
    path = Path(str(source))
    try:
        if path.exists():
            check_saved_dataset(path)
            ds = datasets.load_from_disk(str(path))
            roots = [path.resolve()]
        else:
            ds = datasets.load_dataset(str(source))
            import huggingface_hub.constants

            roots = [Path(datasets.config.HF_DATASETS_CACHE), Path(huggingface_hub.constants.HF_HUB_CACHE)]
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets / pyarrow / fsspec raise many types for a broken dataset
        raise FormatError(str(source), 0, f"not a readable dataset ({type(exc).__name__}: {str(exc)[:200]})") from None
    return (dict(ds) if isinstance(ds, datasets.DatasetDict) else {"train": ds}), roots


def looks_like_hf_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _row_image(img: Any, roots: Sequence[Path], default_suffix: str) -> tuple[bytes | None, str, str | None]:
    """(bytes, suffix, why not) for one row's ``image`` value: embedded bytes, a decoded PIL image, or a path that
    must lie inside ``roots`` (the dataset's own folder; none for an in-memory dataset unless image_root is given)."""
    if isinstance(img, dict):
        data, path = img.get("bytes"), img.get("path")
        if data is not None:
            if not isinstance(data, (bytes, bytearray)):
                return None, default_suffix, "the image 'bytes' are not bytes"
            return bytes(data), default_suffix, None
        if not path:
            return None, default_suffix, "no image bytes in this row"
        if not isinstance(path, str) or check_text(path):
            return None, default_suffix, "the image 'path' is not a file name"
        if not roots:
            return None, default_suffix, ("the image is only a path; paths are read only inside the dataset's "
                                          "folder (pass image_root= for an in-memory dataset)")
        first = Path(roots[0])
        candidate = Path(path) if Path(path).is_absolute() else first / path
        resolved = inside(roots, candidate)  # PathEscapeError: the caller lists the row as refused
        try:
            return resolved.read_bytes(), Path(path).suffix or default_suffix, None
        except OSError as exc:
            return None, default_suffix, f"cannot read the image file ({exc.strerror or exc})"
    if hasattr(img, "save"):  # a decoded PIL image
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue(), ".png", None
    return None, default_suffix, f"the 'image' value is a {type(img).__name__}, not an image"


def import_hf(store: Store, source: Any, *, project: Any = None, user: str | None = None,
              prelabeller: Any = None, outside: str = "reject", update: bool = False, progress: bool = False,
              image_root: str | os.PathLike | None = None) -> ImportReport:
    """Import a ``datasets`` Dataset/DatasetDict, a ``save_to_disk`` folder or a Hub name (needs internet).

    Needs an ``image`` column; optional ``landmarks`` ((68, 2) or 136 numbers), ``visibility``, ``box``, ``face``,
    ``image_name`` / ``file_name`` columns (the layout :func:`annotate.formats.to_hf_dataset` writes). Images stored
    as paths (not bytes) are read only inside the dataset's folder (``image_root`` for an in-memory dataset); rows
    with wrong types are reported as errors and skipped."""
    import datasets

    from annotate.formats import hf_rows_to_labels

    report = ImportReport()
    t0 = time.perf_counter()
    ingest = _Ingest(store, project, user, get_prelabeller(prelabeller), outside, update, report)
    splits, roots = _load_hf(source)
    if image_root is not None:
        roots = [Path(image_root).resolve()]
    for split, ds in splits.items():
        if "image" not in ds.column_names:
            raise FormatError(str(source), 0, f"split {split!r} has no 'image' column")
        if isinstance(ds.features["image"], datasets.Image):
            ds = ds.cast_column("image", datasets.Image(decode=False))
        grouped = hf_rows_to_labels(ds, split, errors=report.errors)
        iterator: Iterable = grouped
        if progress:
            from tqdm import tqdm

            iterator = tqdm(grouped, desc=f"import {split}", unit="img")
        for row, labels in iterator:
            try:
                name = safe_name(labels.file)
                data, suffix, why = _row_image(row.get("image"), roots, Path(name).suffix or ".png")
            except PathEscapeError as exc:
                report.refused.append((labels.file, str(exc)))
                continue
            if data is None:
                report.unreadable.append((name, why or "no image bytes in this row"))
                continue
            if suffix.lower() not in IMAGE_EXTS:
                suffix = ".img"
            ingest.add(name, data, None, suffix, labels, labels.split or split)
    report.seconds = time.perf_counter() - t0
    return report


def import_source(store: Store, source: str | os.PathLike, **kwargs: Any) -> ImportReport:
    """A folder of photos, a ``save_to_disk`` dataset folder, or a Hugging Face Hub dataset name."""
    path = Path(str(source))
    if path.is_dir() and not looks_like_hf_dataset(path):
        return import_folder(store, path, **kwargs)
    kwargs.pop("split", None)
    return import_hf(store, str(source), **kwargs)
