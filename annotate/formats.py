"""Landmark file formats: iBUG .pts, dlib imglab XML, COCO keypoints JSON, Hugging Face ``datasets``.

Readers return :class:`ImageLabels` (one per image, any number of faces) and raise :class:`FormatError` naming the
file and line of the problem. Writers are exact inverses of the readers for what each format can hold:

==========  ===========  ===========  ================================================================
format      coordinates  visibility   notes
==========  ===========  ===========  ================================================================
pts         float        no           one face per file; outside / unknown points written as ``-1 -1``
dlib XML    integer      no           unknown (outside) points omitted, as imglab does; box kept
COCO        float        0 / 1 / 2    v=0 (outside) has x=y=0 by the COCO convention
HF datasets float64      0 / 1 / 2    one row per face; DatasetDict keyed by split
==========  ===========  ===========  ================================================================
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import uuid
import xml.parsers.expat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from annotate.skeleton import EDGES, N_POINTS, OCCLUDED, OUTSIDE, POINT_NAMES, VISIBLE


class FormatError(ValueError):
    """A malformed annotation file; ``file`` and ``line`` (1-based, 0 when unknown) locate the problem."""

    def __init__(self, file: str | os.PathLike, line: int, message: str):
        self.file, self.line, self.message = str(file), int(line), message
        super().__init__(f"{self.file}:{self.line}: {message}" if line else f"{self.file}: {message}")


@dataclass
class FaceLabel:
    points: np.ndarray  # (68, 2) float64, NaN when unknown
    visibility: np.ndarray  # (68,) int8 (2 visible, 1 occluded, 0 outside)
    box: np.ndarray | None = None  # (4,) x0, y0, x1, y1
    source: str = ""  # "file:line" the face came from (for error messages)
    meta: dict = field(default_factory=dict)


@dataclass
class ImageLabels:
    file: str  # image path as written in the annotation file (relative to it, or absolute)
    width: int | None = None
    height: int | None = None
    faces: list[FaceLabel] = field(default_factory=list)
    split: str | None = None
    source: str = ""


def temp_name(path: str | os.PathLike) -> Path:
    """A hidden name next to ``path`` (same folder, so os.replace onto ``path`` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one, never a part:
    write a temporary file beside it, flush it to disk, rename it over ``path``. A kill leaves at most a hidden
    ``.NAME.tmp-*`` file; a write error (disk full) removes it and propagates."""
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _vis_default(points: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(points).all(axis=1), VISIBLE, OUTSIDE).astype(np.int8)


def box_of(points: np.ndarray, visibility: np.ndarray | None = None) -> np.ndarray | None:
    mask = np.isfinite(points).all(axis=1)
    if visibility is not None:
        mask &= np.asarray(visibility) != OUTSIDE
    if not mask.any():
        return None
    p = points[mask]
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], dtype=np.float64)


# ------------------------------------------------------------------------------------------------------------- .pts
def read_pts(path: str | os.PathLike) -> FaceLabel:
    """iBUG 300-W ``.pts`` (``version: 1`` / ``n_points: 68`` / ``{`` / x y lines / ``}``), coordinates as written.

    Points written as negative pairs (``-1 -1``) are treated as unknown (outside)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, 1, f"not a text file ({exc.reason})") from exc
    lines = text.splitlines()
    n_points, body_start, i = None, None, 0
    while i < len(lines):
        raw = lines[i].strip()
        i += 1
        if not raw or raw.startswith("#"):
            continue
        if raw == "{":
            body_start = i
            break
        key, sep, value = raw.partition(":")
        if not sep:
            raise FormatError(path, i, f"expected 'key: value' header or '{{', got {raw[:40]!r}")
        if key.strip() == "n_points":
            try:
                n_points = int(value)
            except ValueError:
                raise FormatError(path, i, f"n_points is not an integer: {value.strip()!r}") from None
    if body_start is None:
        raise FormatError(path, len(lines), "missing '{' opening the point list")
    if n_points is None:
        raise FormatError(path, 1, "missing 'n_points:' header")
    if n_points != N_POINTS:
        raise FormatError(path, 1, f"n_points is {n_points}; only the 68-point iBUG layout is supported")
    points: list[tuple[float, float]] = []
    closed = False
    for j in range(body_start, len(lines)):
        raw = lines[j].strip()
        if not raw:
            continue
        if raw == "}":
            closed = True
            if len(points) != n_points:
                raise FormatError(path, j + 1, f"found {len(points)} points, header says {n_points}")
            rest = [r for r in lines[j + 1:] if r.strip()]
            if rest:
                raise FormatError(path, j + 2, "unexpected text after '}'")
            break
        parts = raw.split()
        if len(parts) != 2:
            raise FormatError(path, j + 1, f"expected 'x y', got {raw[:40]!r}")
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise FormatError(path, j + 1, f"not a number in {raw[:40]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise FormatError(path, j + 1, "coordinates must be finite")
        points.append((x, y))
    if not closed:
        raise FormatError(path, len(lines), "missing '}' closing the point list")
    pts = np.asarray(points, dtype=np.float64)
    unknown = (pts == -1).all(axis=1)
    pts[unknown] = np.nan
    return FaceLabel(pts, _vis_default(pts), box_of(pts), source=f"{path}:{body_start + 1}")


def write_pts(path: str | os.PathLike, points: np.ndarray, visibility: np.ndarray | None = None) -> None:
    pts = np.asarray(points, dtype=np.float64)
    vis = _vis_default(pts) if visibility is None else np.asarray(visibility)
    out = ["version: 1", f"n_points:  {len(pts)}", "{"]
    for (x, y), v in zip(pts.tolist(), vis.tolist()):
        # .pts has no visibility: a point marked outside is written as unknown, whatever position it kept, so that
        # reading the file back gives "outside" again (occluded points are written as positions: read back visible)
        if v == OUTSIDE or not (math.isfinite(x) and math.isfinite(y)):
            out.append("-1 -1")
        else:
            out.append(f"{repr(float(x))} {repr(float(y))}")
    out.append("}")
    atomic_write(path, ("\n".join(out) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------------------- dlib XML
class _Node:
    __slots__ = ("tag", "attrs", "line", "children", "text")

    def __init__(self, tag: str, attrs: dict, line: int):
        self.tag, self.attrs, self.line, self.children, self.text = tag, attrs, line, [], ""


def _parse_xml(path: Path) -> _Node:
    parser = xml.parsers.expat.ParserCreate()
    root = _Node("#document", {}, 0)
    stack = [root]

    def start(tag: str, attrs: dict) -> None:
        node = _Node(tag, attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        stack[-1].text += data

    def entity_decl(*_args: Any) -> None:
        raise FormatError(path, parser.CurrentLineNumber, "XML entity declarations are not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.EntityDeclHandler = entity_decl
    try:
        with open(path, "rb") as fh:
            parser.ParseFile(fh)
    except xml.parsers.expat.ExpatError as exc:
        raise FormatError(path, exc.lineno, f"malformed XML: {xml.parsers.expat.ErrorString(exc.code)}") from None
    return root


def _int_attr(path: Path, node: _Node, name: str, required: bool = True) -> int | None:
    value = node.attrs.get(name)
    if value is None:
        if required:
            raise FormatError(path, node.line, f"<{node.tag}> lacks the '{name}' attribute")
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        raise FormatError(path, node.line, f"<{node.tag}> {name}={value!r} is not a number") from None
    if not math.isfinite(f):
        raise FormatError(path, node.line, f"<{node.tag}> {name}={value!r} is not finite")
    return f  # type: ignore[return-value]


def read_dlib_xml(path: str | os.PathLike) -> list[ImageLabels]:
    """dlib imglab XML: ``<image file= width= height=><box top= left= width= height=><part name='00' x= y=/>``.

    Parts are named by 0-based index; missing parts are unknown (outside). Boxes without parts are kept as faces
    with no landmarks (all points unknown)."""
    path = Path(path)
    root = _parse_xml(path)
    dataset = next((c for c in root.children if c.tag == "dataset"), None)
    if dataset is None:
        raise FormatError(path, 1, "no <dataset> root element: not a dlib imglab file")
    images_node = next((c for c in dataset.children if c.tag == "images"), None)
    out: list[ImageLabels] = []
    if images_node is None:
        return out
    for img in images_node.children:
        if img.tag != "image":
            continue
        file = img.attrs.get("file")
        if not file:
            raise FormatError(path, img.line, "<image> lacks the 'file' attribute")
        labels = ImageLabels(file=file, width=_int_attr(path, img, "width", False),
                             height=_int_attr(path, img, "height", False), source=f"{path}:{img.line}")
        for box in img.children:
            if box.tag != "box":
                continue
            top, left = _int_attr(path, box, "top"), _int_attr(path, box, "left")
            width, height = _int_attr(path, box, "width"), _int_attr(path, box, "height")
            pts = np.full((N_POINTS, 2), np.nan)
            seen: set[int] = set()
            for part in box.children:
                if part.tag != "part":
                    continue
                name = part.attrs.get("name", "")
                if not name.isdigit() or not 0 <= int(name) < N_POINTS:
                    raise FormatError(path, part.line, f"part name {name!r} is not a landmark index 00..67")
                idx = int(name)
                if idx in seen:
                    raise FormatError(path, part.line, f"part {name} appears twice in this box")
                seen.add(idx)
                pts[idx] = (_int_attr(path, part, "x"), _int_attr(path, part, "y"))
            meta = {k: v for k, v in box.attrs.items() if k not in ("top", "left", "width", "height")}
            labels.faces.append(FaceLabel(pts, _vis_default(pts),
                                          np.array([left, top, left + width, top + height], dtype=np.float64),
                                          source=f"{path}:{box.line}", meta={"dlib": meta} if meta else {}))
        out.append(labels)
    return out


def write_dlib_xml(path: str | os.PathLike, images: Iterable[ImageLabels], name: str = "MSMA annotations") -> None:
    """dlib imglab XML (integer coordinates; occlusion is not representable and is dropped)."""
    lines = ["<?xml version='1.0' encoding='ISO-8859-1'?>",
             "<?xml-stylesheet type='text/xsl' href='image_metadata_stylesheet.xsl'?>",
             "<dataset>", f"<name>{_xml_text(name)}</name>", "<images>"]
    for img in images:
        size = ""
        if img.width is not None and img.height is not None:
            size = f" width='{int(img.width)}' height='{int(img.height)}'"
        lines.append(f"  <image file={quoteattr(img.file)}{size}>")
        for face in img.faces:
            box = face.box if face.box is not None else box_of(face.points, face.visibility)
            if box is None:
                continue
            x0, y0, x1, y1 = (int(round(float(v))) for v in box)
            extra = "".join(f" {k}={quoteattr(str(v))}" for k, v in (face.meta.get("dlib") or {}).items())
            lines.append(f"    <box top='{y0}' left='{x0}' width='{x1 - x0}' height='{y1 - y0}'{extra}>")
            for i, (x, y) in enumerate(face.points.tolist()):
                if math.isfinite(x) and math.isfinite(y) and face.visibility[i] != OUTSIDE:
                    lines.append(f"      <part name='{i:02d}' x='{int(round(x))}' y='{int(round(y))}'/>")
            lines.append("    </box>")
        lines.append("  </image>")
    lines += ["</images>", "</dataset>"]
    atomic_write(path, ("\n".join(lines) + "\n").encode("iso-8859-1", errors="xmlcharrefreplace"))


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ------------------------------------------------------------------------------------------------------------- COCO
MAX_JSON_BYTES = 1 << 30


class _LineDict(dict):
    line: int = 0


def _json_with_lines(path: Path) -> Any:
    """json.load that records, for every object, the line of its opening brace (``_LineDict.line``)."""
    import json.decoder
    import json.scanner

    if path.stat().st_size > MAX_JSON_BYTES:
        raise FormatError(path, 0, f"larger than {MAX_JSON_BYTES >> 20} MiB; split it into several files")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, 1, f"not UTF-8 text ({exc.reason})") from exc
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    decoder = json.JSONDecoder()

    def parse_object(s_and_end: tuple[str, int], *args: Any, **kwargs: Any) -> tuple[Any, int]:
        obj, end = json.decoder.JSONObject(s_and_end, *args, **kwargs)
        out = _LineDict(obj)
        out.line = bisect.bisect_left(newlines, s_and_end[1]) + 1
        return out, end

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise FormatError(path, exc.lineno, f"malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise FormatError(path, 1, "JSON nested too deeply") from None


MAX_IMAGE_SIDE = 1_000_000  # pixels; larger declared sizes are refused as nonsense


def is_number(value: Any) -> bool:
    """A JSON / Python number (int or float, numpy scalars too) that is not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_text(value: Any) -> str | None:
    """Why ``value`` is not a usable name (None when it is): a non-empty str, UTF-8 encodable, without NUL."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


SPLIT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # part of export file names: never '/' or '\\'


def check_split(value: Any) -> str | None:
    """Why ``value`` is not a split name (None when it is): it becomes part of export file names."""
    if not isinstance(value, str) or not SPLIT_PATTERN.fullmatch(value):
        return f"must be a plain name (letters, digits, '_', '-', '.'), got {value!r:.40}"
    return None


def read_coco(path: str | os.PathLike) -> list[ImageLabels]:
    """COCO keypoints JSON with 68 keypoints per annotation ([x, y, v] * 68; v=0 -> unknown).

    Types are checked (numbers are never booleans, ids are integers or strings, sizes positive integers, bbox four
    finite numbers); any deviation raises FormatError naming the file, the line of the object and the field."""
    path = Path(path)
    data = _json_with_lines(path)

    def line(obj: Any, default: int = 0) -> int:
        return getattr(obj, "line", 0) or default

    def fail(obj: Any, message: str, default: int = 0) -> FormatError:
        return FormatError(path, line(obj, default) or line(data, 1), message)

    def is_id(value: Any) -> bool:
        return is_integer(value) or (isinstance(value, str) and check_text(value) is None)

    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise fail(data, "not a COCO file: needs a top-level object with an 'images' list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise fail(data, "'annotations' must be a list")
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise fail(data, "'categories' must be a list")
    categories: dict[Any, dict] = {}
    for cat in cats:
        if not isinstance(cat, dict):
            raise fail(data, "each category must be an object")
        if not is_id(cat.get("id")):
            raise fail(cat, f"category 'id' must be an integer or a string, got {cat.get('id')!r:.40}")
        kps = cat.get("keypoints")
        if kps is not None:
            if not isinstance(kps, list) or not all(isinstance(k, str) for k in kps):
                raise fail(cat, "category 'keypoints' must be a list of names")
            if len(kps) != N_POINTS:
                raise fail(cat, f"category has {len(kps)} keypoints, expected {N_POINTS}")
        categories[cat["id"]] = cat
    images: dict[Any, ImageLabels] = {}
    for img in data["images"]:
        if not isinstance(img, dict):
            raise fail(data, "each image must be an object")
        if not is_id(img.get("id")):
            raise fail(img, f"image 'id' must be an integer or a string, got {img.get('id')!r:.40}")
        why = check_text(img.get("file_name"))
        if why:
            raise fail(img, f"image 'file_name' {why}")
        if img["id"] in images:
            raise fail(img, f"duplicate image id {img['id']!r}")
        size = {}
        for key in ("width", "height"):
            v = img.get(key)
            if v is not None and not (is_integer(v) and 0 < v <= MAX_IMAGE_SIDE):
                raise fail(img, f"image '{key}' must be a positive integer, got {v!r:.40}")
            size[key] = None if v is None else int(v)
        split = img.get("split")
        if split is not None and check_split(split):
            raise fail(img, f"image 'split' {check_split(split)}")
        images[img["id"]] = ImageLabels(file=img["file_name"], width=size["width"], height=size["height"],
                                        split=split, source=f"{path}:{line(img)}")

    def order(item: tuple[int, Any]) -> tuple:
        i, a = item
        ident = a.get("id") if isinstance(a, dict) else None
        return (0, int(ident), "", i) if is_integer(ident) else (1, 0, str(ident), i) if isinstance(ident, str) \
            else (2, 0, "", i)

    for _, ann in sorted(enumerate(anns), key=order):
        if not isinstance(ann, dict):
            raise fail(data, "each annotation must be an object")
        ln = line(ann)
        if "id" in ann and not is_id(ann["id"]):
            raise fail(ann, f"annotation 'id' must be an integer or a string, got {ann['id']!r:.40}")
        if not is_id(ann.get("image_id")) or ann["image_id"] not in images:
            raise fail(ann, f"annotation refers to unknown image_id {ann.get('image_id')!r:.40}")
        cat_id = ann.get("category_id")
        if cat_id is not None and not is_id(cat_id):
            raise fail(ann, f"'category_id' must be an integer or a string, got {cat_id!r:.40}")
        kp = ann.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * N_POINTS:
            n = len(kp) if isinstance(kp, list) else "no list"
            raise fail(ann, f"'keypoints' must hold {3 * N_POINTS} numbers (x, y, v) * 68, got {n}")
        bad = next((i for i, v in enumerate(kp) if not is_number(v) or not _finite(v)), None)
        if bad is not None:
            raise fail(ann, f"'keypoints'[{bad}] is {kp[bad]!r:.40}: keypoints must be finite numbers (not booleans)")
        arr = np.asarray(kp, dtype=np.float64).reshape(N_POINTS, 3)
        vis = arr[:, 2]
        if not np.isin(vis, (0, 1, 2)).all():
            raise fail(ann, "keypoint visibility must be 0, 1 or 2")
        pts = arr[:, :2].copy()
        pts[vis == 0] = np.nan
        box = None
        bbox = ann.get("bbox")
        if bbox is not None:
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) and _finite(v) for v in bbox)):
                raise fail(ann, f"'bbox' must be [x, y, width, height] (four finite numbers), got {bbox!r:.60}")
            x, y, w, h = (float(v) for v in bbox)
            if w < 0 or h < 0:
                raise fail(ann, "'bbox' width and height must not be negative")
            box = np.array([x, y, x + w, y + h])
        meta = {}
        if "face" in ann:
            if not (is_integer(ann["face"]) and 0 <= ann["face"] < 1000):
                raise fail(ann, f"'face' must be a face index 0..999, got {ann['face']!r:.40}")
            meta = {"coco": {"face": int(ann["face"])}}
        images[ann["image_id"]].faces.append(FaceLabel(pts, vis.astype(np.int8), box, source=f"{path}:{ln}",
                                                       meta=meta))
    return list(images.values())


def coco_category() -> dict:
    return {"id": 1, "name": "face", "supercategory": "person", "keypoints": list(POINT_NAMES),
            "skeleton": [[a + 1, b + 1] for a, b in EDGES]}


def write_coco(path: str | os.PathLike, images: Iterable[ImageLabels]) -> None:
    out: dict[str, Any] = {"info": {"description": "MSMA annotate export", "version": "1.0"},
                           "images": [], "annotations": [], "categories": [coco_category()]}
    ann_id = 1
    for image_id, img in enumerate(images, start=1):
        entry: dict[str, Any] = {"id": image_id, "file_name": img.file, "width": img.width, "height": img.height}
        if img.split:
            entry["split"] = img.split
        out["images"].append(entry)
        for face in img.faces:
            kp: list[float] = []
            for (x, y), v in zip(face.points.tolist(), face.visibility.tolist()):
                if v == OUTSIDE or not (math.isfinite(x) and math.isfinite(y)):
                    kp += [0, 0, 0]
                else:
                    kp += [float(x), float(y), int(v)]
            box = face.box if face.box is not None else box_of(face.points, face.visibility)
            bbox = [0.0, 0.0, 0.0, 0.0] if box is None else [float(box[0]), float(box[1]),
                                                               float(box[2] - box[0]), float(box[3] - box[1])]
            out["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": 1, "keypoints": kp,
                "num_keypoints": int((face.visibility != OUTSIDE).sum()), "bbox": bbox,
                "area": bbox[2] * bbox[3], "iscrowd": 0})
            ann_id += 1
    atomic_write(path, json.dumps(out, indent=1).encode("utf-8"))


def detect_format(path: str | os.PathLike) -> str | None:
    """'pts' | 'dlib' | 'coco' | None from the file name and first bytes."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".pts":
        return "pts"
    if suffix == ".xml":
        head = p.read_bytes()[:4096]
        return "dlib" if b"<dataset" in head else None
    if suffix == ".json":
        head = p.read_bytes()[:1 << 16]
        return "coco" if b'"images"' in head or b'"annotations"' in head else None
    return None


# ------------------------------------------------------------------------------------------------- HF datasets
HF_COLUMNS = ("image", "image_name", "face", "landmarks", "visibility", "box", "width", "height", "split")


def hf_features() -> Any:
    import datasets

    return datasets.Features({
        "image": datasets.Image(),
        "image_name": datasets.Value("string"),
        "face": datasets.Value("int32"),
        "landmarks": datasets.Array2D(shape=(N_POINTS, 2), dtype="float64"),
        "visibility": datasets.Sequence(datasets.Value("int8"), length=N_POINTS),
        "box": datasets.Sequence(datasets.Value("float64"), length=4),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "split": datasets.Value("string"),
    })


def to_hf_dataset(records: Iterable[tuple[str | os.PathLike, ImageLabels]]) -> Any:
    """(image path, labels) pairs -> ``datasets.DatasetDict`` keyed by split, one row per face."""
    import datasets

    rows: dict[str, dict[str, list]] = {}
    for image_path, img in records:
        split = img.split or "train"
        cols = rows.setdefault(split, {k: [] for k in HF_COLUMNS})
        for k, face in enumerate(img.faces):
            box = face.box if face.box is not None else box_of(face.points, face.visibility)
            cols["image"].append(str(image_path))
            cols["image_name"].append(img.file)
            cols["face"].append(int(face.meta.get("face", k)))
            cols["landmarks"].append(np.asarray(face.points, dtype=np.float64))
            cols["visibility"].append([int(v) for v in face.visibility])
            cols["box"].append([float("nan")] * 4 if box is None else [float(v) for v in box])
            cols["width"].append(int(img.width or 0))
            cols["height"].append(int(img.height or 0))
            cols["split"].append(split)
    features = hf_features()
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(cols, features=features) for split, cols in sorted(rows.items())
    })


def _hf_face(row: Mapping[str, Any], where: str, i: int) -> FaceLabel | None:
    """One row's face (None when it has no landmarks); FormatError on wrong types or shapes."""
    def fail(message: str) -> FormatError:
        return FormatError(where, i + 1, f"row {i}: {message}")

    lm = row.get("landmarks")
    if lm is None:
        return None
    pts = _numeric_array(lm, "landmarks", fail, True, ((N_POINTS, 2), (2 * N_POINTS,)),
                         f"{N_POINTS} (x, y) pairs or {2 * N_POINTS} numbers").reshape(N_POINTS, 2)
    vis = row.get("visibility")
    if vis is None:
        vis = _vis_default(pts)
    else:
        v = _numeric_array(vis, "visibility", fail, False, ((N_POINTS,),), f"{N_POINTS} values in 0 / 1 / 2")
        if not np.isin(v, (0, 1, 2)).all():
            raise fail(f"'visibility' must be {N_POINTS} values in 0 / 1 / 2")
        vis = v.astype(np.int8)
    box = row.get("box")
    if box is not None:
        b = _numeric_array(box, "box", fail, True, ((4,),), "four numbers x0, y0, x1, y1")
        box = b if np.isfinite(b).all() else None  # NaN: no box (what to_hf_dataset writes for none)
    meta = {}
    face = row.get("face")
    if face is not None:
        if not (is_integer(face) and 0 <= face < 1000):
            raise fail(f"'face' must be a face index 0..999, got {face!r:.40}")
        meta = {"face": int(face)}
    return FaceLabel(pts, vis, box, source=f"{where} row {i}", meta=meta)


def _numeric_array(value: Any, name: str, fail, allow_nan: bool, shapes: tuple[tuple[int, ...], ...],
                   expected: str) -> np.ndarray:
    """Nested lists / an array of numbers (never booleans or text) of one of ``shapes`` -> float64 array."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise fail(f"'{name}' must hold numbers, got an array of {value.dtype}")
    else:
        if not isinstance(value, (list, tuple)):
            raise fail(f"'{name}' must be {expected}, got {type(value).__name__}")
        stack, count = [value], 0
        while stack:
            v = stack.pop()
            if isinstance(v, (list, tuple, np.ndarray)):
                count += len(v)
                if count > 10 * N_POINTS:
                    raise fail(f"'{name}' holds too many values")
                stack.extend(v)
            elif not is_number(v):
                raise fail(f"'{name}' must hold numbers (not booleans or text), found {v!r:.40}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, OverflowError):
        raise fail(f"'{name}' must be {expected} (ragged or out-of-range values)") from None
    if arr.shape not in shapes:
        raise fail(f"'{name}' must be {expected}, got shape {arr.shape}")
    if np.isinf(arr).any() or (not allow_nan and np.isnan(arr).any()):
        raise fail(f"'{name}' must hold finite numbers" + (" (NaN marks an unknown point)" if allow_nan else ""))
    return arr


def hf_rows_to_labels(rows: Iterable[Mapping[str, Any]], split: str | None = None,
                      errors: list[str] | None = None) -> list[tuple[Mapping[str, Any], ImageLabels]]:
    """Rows of a face dataset (landmarks (68, 2) or flat 136, optional visibility / box / face / image_name / width /
    height / split) grouped into (first row, ImageLabels) per image name; rows without landmarks give images
    without faces. A row with wrong types raises FormatError ("dataset split S:ROW: row i: ..."), or, when an
    ``errors`` list is given, is reported there and skipped (its image keeps its other faces)."""
    where = f"dataset split {split}" if split else "dataset"
    out: dict[str, tuple[Mapping[str, Any], ImageLabels]] = {}
    for i, row in enumerate(rows):
        try:
            if not isinstance(row, Mapping):
                raise FormatError(where, i + 1, f"row {i}: not a mapping of columns")
            name = next((row[k] for k in ("image_name", "file_name") if row.get(k) is not None),
                        f"{split or 'train'}/{i:06d}")
            why = check_text(name)
            if why:
                raise FormatError(where, i + 1, f"row {i}: 'image_name' {why}")
            size = {}
            for key in ("width", "height"):
                v = row.get(key)
                if v is not None and not (is_integer(v) and 0 <= v <= MAX_IMAGE_SIDE):
                    raise FormatError(where, i + 1, f"row {i}: '{key}' must be a non-negative integer, got {v!r:.40}")
                size[key] = int(v) if v else None
            row_split = row.get("split")
            if row_split is not None and check_split(row_split):
                raise FormatError(where, i + 1, f"row {i}: 'split' {check_split(row_split)}")
            face = _hf_face(row, where, i)
        except FormatError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        entry = out.get(name)
        if entry is None:
            entry = (row, ImageLabels(file=name, width=size["width"], height=size["height"],
                                      split=row_split or split, source=f"{where} row {i}"))
            out[name] = entry
        if face is not None:
            entry[1].faces.append(face)
    return list(out.values())


__all__ = [
    "FaceLabel", "FormatError", "ImageLabels", "OCCLUDED", "box_of", "coco_category", "detect_format",
    "hf_features", "hf_rows_to_labels", "read_coco", "read_dlib_xml", "read_pts", "to_hf_dataset", "write_coco",
    "write_dlib_xml", "write_pts",
]
