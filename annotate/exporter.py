"""Export a project's current annotations: iBUG .pts, dlib XML, COCO keypoints JSON, Hugging Face DatasetDict.

Images are hard-linked (or copied) next to the labels under their original relative names, so an export folder can
be imported again as-is (``python -m annotate import EXPORT_DIR``) and reproduces the same annotations.

Every file is written under a temporary name and renamed into place, so a killed or failed export (disk full)
never leaves a truncated file: each photo / ``.pts`` is complete or absent, and the index of an export (the dlib
XML, the COCO JSON, ``dataset_dict.json``) appears only after everything it refers to is in place.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotate.formats import (
    FaceLabel,
    ImageLabels,
    temp_name,
    to_hf_dataset,
    write_coco,
    write_dlib_xml,
    write_pts,
)
from annotate.importer import safe_name
from annotate.store import ImageRecord, Store

FORMATS = ("pts", "dlib", "coco", "hf")
# What an export contains unless asked otherwise: finished work only, never raw pre-labels, work in progress or
# rejected faces by accident. ``statuses="all"`` (CLI ``--status all``) exports every image.
DEFAULT_EXPORT_STATUSES = ("done", "approved")


@dataclass
class ExportReport:
    out_dir: Path
    images: int = 0
    faces: int = 0
    files: list[Path] = field(default_factory=list)
    dataset: Any = None  # the DatasetDict for format 'hf'
    statuses: tuple[str, ...] | None = None  # None: every status
    left_out: dict[str, int] = field(default_factory=dict)  # status -> images not exported because of it

    def summary(self) -> str:
        text = f"exported {self.faces} face(s) on {self.images} image(s) to {self.out_dir} ({len(self.files)} file(s))"
        if self.statuses is not None:
            text += f"; statuses {', '.join(self.statuses)}"
        if self.left_out:
            parts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(self.left_out.items()))
            text += f"; left out {sum(self.left_out.values())} image(s): {parts} (--status all to include them)"
        return text


def collect(store: Store, project: Any = None, statuses: Sequence[str] | None = None,
            include_unlabelled: bool = False) -> list[tuple[ImageRecord, ImageLabels]]:
    out = []
    for rec in store.list_images(project, statuses=statuses, order="id"):
        faces = [FaceLabel(a.points, a.visibility, a.box, meta={**a.meta, "face": a.face})
                 for a in store.get_annotations(rec.id)]
        if not faces and not include_unlabelled:
            continue
        out.append((rec, ImageLabels(file=safe_name(rec.name), width=rec.width, height=rec.height, faces=faces,
                                     split=rec.split)))
    return out


def _place_image(store: Store, rec: ImageRecord, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = store.image_path(rec)
    if target.exists() and os.path.samefile(src, target):
        return  # already this photo (a hard link from an earlier export); renaming a link onto it is a no-op
    tmp = temp_name(target)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _save_dataset(ds: Any, out: Path) -> None:
    """``DatasetDict.save_to_disk`` into a hidden folder inside ``out``, then moved into place: the old
    ``dataset_dict.json`` goes first and the new one comes last, so the folder loads as a dataset only when
    complete."""
    work = out / f".export-tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        ds.save_to_disk(str(work))
        (out / "dataset_dict.json").unlink(missing_ok=True)
        for split in ds:
            target = out / split
            if target.exists():
                old = out / f".export-old-{split}-{uuid.uuid4().hex[:8]}"
                os.replace(target, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(work / split, target)
        os.replace(work / "dataset_dict.json", out / "dataset_dict.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_leftovers(out: Path) -> None:
    """Temporary files of an earlier export that was killed."""
    for p in out.glob(".export-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    for p in out.rglob(".*.tmp-*"):
        p.unlink(missing_ok=True)


def export_project(store: Store, out_dir: str | os.PathLike, fmt: str, *, project: Any = None,
                   statuses: Sequence[str] | str | None = DEFAULT_EXPORT_STATUSES,
                   copy_images: bool = True) -> ExportReport:
    """Export the images whose status is in ``statuses`` (default: done and approved; ``"all"`` or None: all)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    statuses = None if statuses is None or statuses == "all" else tuple(statuses)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    report = ExportReport(out.resolve(), statuses=statuses)
    items = collect(store, project, statuses)
    if statuses is not None:
        for rec in store.list_images(project, order="id"):
            if rec.status not in statuses:
                report.left_out[rec.status] = report.left_out.get(rec.status, 0) + 1
    report.images = len(items)
    report.faces = sum(len(lab.faces) for _, lab in items)
    if copy_images and fmt != "hf":
        for rec, lab in items:
            _place_image(store, rec, out / lab.file)
    if fmt == "pts":
        for _rec, lab in items:
            stem = (out / lab.file).with_suffix("")
            stem.parent.mkdir(parents=True, exist_ok=True)
            for face in lab.faces:
                k = int(face.meta.get("face", 0))
                path = stem.with_suffix(".pts") if len(lab.faces) == 1 and k == 0 else Path(f"{stem}_{k}.pts")
                write_pts(path, face.points, face.visibility)
                report.files.append(path)
    elif fmt in ("dlib", "coco"):
        by_split: dict[str, list[ImageLabels]] = {}
        for _rec, lab in items:
            by_split.setdefault(lab.split or "train", []).append(lab)
        for split, labs in sorted(by_split.items()):
            if fmt == "dlib":
                path = out / f"{split}_with_face_landmarks.xml"
                write_dlib_xml(path, labs, name=f"MSMA {split} faces")
            else:
                path = out / f"{split}_keypoints.json"
                write_coco(path, labs)
            report.files.append(path)
    else:
        ds = to_hf_dataset([(store.image_path(rec), lab) for rec, lab in items])
        _save_dataset(ds, out)
        report.dataset = ds
        report.files.append(out / "dataset_dict.json")
    return report


def push_to_hub(dataset_dir: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None) -> str:
    """Upload an exported DatasetDict (needs internet and a Hugging Face token)."""
    import datasets

    ds = datasets.load_from_disk(str(dataset_dir))
    ds.push_to_hub(repo_id, private=private, token=token)
    return f"https://huggingface.co/datasets/{repo_id}"
