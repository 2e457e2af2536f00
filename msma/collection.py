"""Photo collections at scale: thousands to millions of photos in, one table row per face out.

    from msma.collection import CollectionSettings, open_source, run_collection, load_collection
    report = run_collection(open_source("photos/"), "out/", CollectionSettings(method="network", workers=2))
    table = load_collection("out/")        # a datasets.Dataset, one row per face (and per failed photo)

Sources (`open_source`): a folder of images (searched recursively; photo id = the path relative to the folder), a
dataset saved with ``Dataset.save_to_disk`` or a Hugging Face hub dataset id (photo id = ``id_column`` or the row
number). The photos still to do are cut into batches and run in this process (one worker) or a pool of ``spawn``ed
worker processes (``concurrent.futures``; not ``Dataset.map(num_proc=N)``, whose forked workers abort inside
mediapipe once the parent process has used it). Each worker holds one `Reconstructor`, runs
`Reconstructor.estimate_many` on a batch and writes that batch's rows as one Parquet shard (temporary file + rename,
so a shard is complete or absent). A rerun reads the photo ids of the shards already
written and skips those photos, so a killed run loses at most the batches in flight. A photo that fails (unreadable,
no face, anything else) becomes a row with ``status`` "error" / "no_face" and its message, never the end of the run.
At the end the shards are consolidated into ``faces.parquet`` (each photo from the first shard that holds it).
``msma.collection_ray`` runs the same batches on Ray.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

__all__ = ["CollectionReport", "CollectionSettings", "CollectionSource", "ROW_SCHEMA", "TIMING_KEYS",
           "consolidate", "finished_photo_ids", "load_collection", "open_source", "process_batch", "run_collection"]

SHARD_DIR = "shards"
MESH_DIR = "meshes"
TABLE_NAME = "faces.parquet"
TIMING_KEYS = ("load", "detect", "align", "network", "fit_landmarks", "photometric", "mesh", "total")


def _arkit_names() -> tuple[str, ...]:
    from msma.export import ARKIT52_NAMES

    return ARKIT52_NAMES


def _schema() -> pa.Schema:
    f32 = pa.float32()
    point = pa.list_(f32, 2)
    return pa.schema([
        ("photo_id", pa.string()),
        ("face_index", pa.int32()),  # -1 on a failed photo's row
        ("status", pa.string()),  # "ok" | "no_face" | "error"
        ("error", pa.string()),  # "ExceptionType: message" when status != "ok"
        ("method", pa.string()),
        ("detector", pa.string()),
        ("score", f32),
        ("image_width", pa.int32()),  # the photo as processed (EXIF-rotated, downscaled to max_side)
        ("image_height", pa.int32()),
        ("source_scale", f32),  # processed pixels per original pixel
        ("box", pa.list_(f32, 4)),  # x0, y0, x1, y1, processed photo pixels
        ("landmarks68", pa.list_(point, 68)),  # detected iBUG 68 points, processed photo pixels
        ("fitted_landmarks68", pa.list_(point, 68)),  # the fitted face's 68 points
        ("fit_error_px", f32),  # mean distance between the two, pixels
        ("identity", pa.list_(f32)),
        ("expression", pa.list_(f32)),  # the model's expression weights (ICT: 53, in [0, 1])
        ("texture", pa.list_(f32)),
        ("lighting", pa.list_(f32, 27)),  # 9 SH bands x RGB
        ("angles", pa.list_(f32, 3)),  # pitch, yaw, roll, radians
        ("translation", pa.list_(f32, 3)),  # model units (decimetres)
        ("pitch", f32), ("yaw", f32), ("roll", f32),  # degrees
        ("arkit", pa.struct([(name, f32) for name in _arkit_names()])),  # Apple's 52 ARKit blendshape weights
        # seconds: load / detect are the photo's; batched stages are this face's equal share of its batch
        ("timings", pa.struct([(key, f32) for key in TIMING_KEYS])),
        ("mesh_files", pa.list_(pa.string())),
    ])


ROW_SCHEMA = _schema()


@dataclass
class CollectionSettings:
    """How each photo is reconstructed and how the job runs (everything a worker needs; picklable)."""

    method: str = "auto"  # msma.api methods: "auto" (fitting), "network", "network+refine", "fitting"
    detector: str = "auto"
    device: str = "cpu"
    weights: str | None = None
    face_model: str | None = None
    photometric: bool = True
    batch_size: int = 16  # photos per batch: one network pass and one shard each
    workers: int = 1  # processes (Dataset.map num_proc)
    threads_per_worker: int = 1  # torch / OpenCV / BLAS threads in each worker
    largest_only: bool = False
    max_faces: int | None = None
    max_side: int = 4096
    mesh_formats: tuple[str, ...] = ()  # also export each face's mesh into OUT/meshes in these formats
    texture: bool = True  # unwrap the photo texture for the exported meshes
    rigged: bool = True  # GLB with the 53 ARKit morph targets (mesh export only)

    def validate(self) -> None:
        from msma.defaults import METHODS

        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.batch_size < 1 or self.workers < 1 or self.threads_per_worker < 1:
            raise ValueError("batch_size, workers and threads_per_worker must be >= 1")


@dataclass
class CollectionSource:
    """Photos of a collection: unique ids and where each image is (a file path, or a row of ``dataset``)."""

    photo_ids: list[str]
    paths: list[str] | None = None  # image files (folder source)
    dataset: Any = None  # datasets.Dataset whose ``image_column`` holds the images (dataset sources)
    image_column: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if len(set(self.photo_ids)) != len(self.photo_ids):
            seen: set[str] = set()
            duplicate = next(p for p in self.photo_ids if p in seen or seen.add(p))
            raise ValueError(f"photo ids must be unique; {duplicate!r} appears more than once")
        if (self.paths is None) == (self.dataset is None):
            raise ValueError("a source has either paths or a dataset")

    def __len__(self) -> int:
        return len(self.photo_ids)


def open_source(spec: str | os.PathLike, split: str = "train", image_column: str | None = None,
                id_column: str | None = None) -> CollectionSource:
    """A collection from a folder of images, a dataset saved with ``save_to_disk`` or a hub dataset id (anything
    else that does not exist here and is neither absolute nor starts with ``.`` / ``~``)."""
    from msma.image_io import PHOTO_EXTENSIONS

    path = Path(spec)
    if path.is_dir() and not _is_saved_dataset(path):
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS)
        return CollectionSource([p.relative_to(path).as_posix() for p in files], paths=[str(p) for p in files],
                                description=f"folder {path} ({len(files)} images)")
    import datasets

    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        name = f"saved dataset {path}"
    elif path.exists():
        raise ValueError(f"{path} is neither a folder of images nor a saved dataset")
    elif path.is_absolute() or str(spec).startswith((".", "~")):
        raise FileNotFoundError(f"{path} does not exist")
    else:
        loaded = datasets.load_dataset(str(spec), split=split)
        name = f"hub dataset {spec}"
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{name} has splits {list(loaded)}, not {split!r}")
        loaded, name = loaded[split], f"{name} [{split}]"
    return source_from_dataset(loaded, image_column=image_column, id_column=id_column, description=name)


def source_from_dataset(dataset, image_column: str | None = None, id_column: str | None = None,
                        description: str = "dataset") -> CollectionSource:
    """A collection from a `datasets.Dataset` with an image column (``datasets.Image`` feature, bytes or paths)."""
    import datasets

    if image_column is None:
        image_column = next((name for name, feature in dataset.features.items()
                             if isinstance(feature, datasets.Image)), None)
        if image_column is None:
            raise ValueError(f"{description} has no Image column; name one with image_column "
                             f"(columns: {dataset.column_names})")
    if image_column not in dataset.column_names:
        raise ValueError(f"{description} has no column {image_column!r} (columns: {dataset.column_names})")
    if isinstance(dataset.features[image_column], datasets.Image):  # decode in the worker: a bad image is one row
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    if id_column is not None:
        if id_column not in dataset.column_names:
            raise ValueError(f"{description} has no column {id_column!r} (columns: {dataset.column_names})")
        ids = [str(v) for v in dataset[id_column]]
    else:
        ids = [str(i) for i in range(len(dataset))]
    return CollectionSource(ids, dataset=dataset.select_columns([image_column]), image_column=image_column,
                            description=f"{description} ({len(ids)} rows)")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (
        path / "state.json").is_file()


# ----------------------------------------------------------------------------------------------------- shards
def _shard_dir(out_dir: Path) -> Path:
    return Path(out_dir) / SHARD_DIR


def _shard_files(out_dir: Path) -> list[Path]:
    return sorted(_shard_dir(out_dir).glob("part-*.parquet"))


def finished_photo_ids(out_dir: str | os.PathLike) -> set[str]:
    """Photo ids with rows in a finished shard of ``out_dir``. An unreadable shard is set aside (renamed .bad) so
    its photos are redone."""
    done: set[str] = set()
    for shard in _shard_files(Path(out_dir)):
        try:
            done.update(pq.read_table(shard, columns=["photo_id"]).column("photo_id").to_pylist())
        except (pa.ArrowException, OSError) as error:
            log.warning("unreadable shard %s set aside (%s); its photos will be redone", shard, error)
            shard.rename(shard.with_suffix(".bad"))
    return done


def write_shard(out_dir: Path, rows: list[dict]) -> Path:
    """Write rows as one shard: a temporary file renamed into place, so a shard is either complete or absent."""
    directory = _shard_dir(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
    temporary = directory / f".tmp-{name}"
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    try:
        pq.write_table(table, temporary)
        with open(temporary, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(temporary, directory / name)
    finally:
        temporary.unlink(missing_ok=True)
    return directory / name


def consolidate(out_dir: str | os.PathLike) -> Path:
    """Merge the shards into ``OUT/faces.parquet``; a photo found in several shards (a batch redone after a kill
    whose shard had already been written by a worker outliving its parent) is kept from the first one only."""
    out_dir = Path(out_dir)
    target = out_dir / TABLE_NAME
    temporary = out_dir / f".tmp-{uuid.uuid4().hex[:8]}-{TABLE_NAME}"
    seen: set[str] = set()
    try:
        with pq.ParquetWriter(temporary, ROW_SCHEMA) as writer:
            for shard in _shard_files(out_dir):
                table = pq.read_table(shard, schema=ROW_SCHEMA)
                ids = table.column("photo_id").to_pylist()
                keep = [pid not in seen for pid in ids]
                seen.update(ids)
                if any(keep):
                    writer.write_table(table.filter(pa.array(keep)))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def load_collection(out_dir: str | os.PathLike):
    """The consolidated table of a finished run as a `datasets.Dataset` (one row per face / failed photo)."""
    import datasets

    table = Path(out_dir) / TABLE_NAME
    if not table.is_file():
        raise FileNotFoundError(f"{table} does not exist: run the collection job first")
    return datasets.Dataset.from_parquet(str(table), cache_dir=str(Path(out_dir) / ".cache"))


# ----------------------------------------------------------------------------------------------------- rows
def _safe_stem(photo_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", photo_id)[-80:].strip("._") or "photo"
    return f"{readable}-{sha1(photo_id.encode()).hexdigest()[:8]}"


def _failure_row(photo_id: str, message: str, status: str, method: str, timings: dict[str, float]) -> dict:
    row = {name: None for name in ROW_SCHEMA.names}
    row.update(photo_id=photo_id, face_index=-1, status=status, error=message, method=method,
               timings=_timings(timings), mesh_files=[])
    return row


def _timings(values: dict[str, float]) -> dict[str, float | None]:
    out = {key: values.get(key) for key in TIMING_KEYS}
    out["total"] = float(sum(v for k, v in values.items() if k != "total"))
    return out


def _face_rows(photo_id: str, estimate, mesh_files: list[list[str]]) -> list[dict]:
    from msma.export import to_arkit52

    height, width = estimate.image.shape[:2]
    rows = []
    for face, files in zip(estimate.faces, mesh_files):
        c = {k: v[0].numpy().astype(np.float32) for k, v in face.coefficients.as_dict().items()}
        timings = {"load": estimate.timings.get("load"), "detect": estimate.timings.get("detect"), **face.timings}
        rows.append({
            "photo_id": photo_id, "face_index": face.index, "status": "ok", "error": None, "method": face.method,
            "detector": face.detection.detector, "score": float(face.detection.score), "image_width": width,
            "image_height": height, "source_scale": float(estimate.source_scale),
            "box": np.asarray(face.detection.box, np.float32).tolist(),
            "landmarks68": np.asarray(face.detection.landmarks68, np.float32).tolist(),
            "fitted_landmarks68": face.fitted_landmarks.astype(np.float32).tolist(),
            "fit_error_px": face.landmark_error_px,
            "identity": c["identity"].tolist(), "expression": c["expression"].tolist(),
            "texture": c["texture"].tolist(), "lighting": c["lighting"].tolist(), "angles": c["angles"].tolist(),
            "translation": c["translation"].tolist(), "pitch": face.pose.pitch, "yaw": face.pose.yaw,
            "roll": face.pose.roll, "arkit": to_arkit52(face.blendshapes), "timings": _timings(timings),
            "mesh_files": files,
        })
    return rows


# ----------------------------------------------------------------------------------------------------- workers
# the settings a Reconstructor is built from; the others (batching, workers, meshes) can change between runs
_MODEL_FIELDS = ("method", "detector", "device", "weights", "face_model", "photometric", "max_side")
_WORKER: dict[str, Any] = {}  # per process: the Reconstructor of the settings it was built for


def limit_threads(threads: int) -> None:
    """torch, OpenCV and BLAS/OpenMP pools of this (worker) process to ``threads``, for good (N workers must not
    oversubscribe the cores)."""
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _WORKER["thread_limits"] = threadpool_limits(threads)  # kept alive: the limit lasts as long as the object


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """`limit_threads` for a block, restored afterwards (the job running inside the caller's process)."""
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        with threadpool_limits(threads):
            if torch_before != threads:
                torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            yield
    finally:
        if torch.get_num_threads() != torch_before:
            torch.set_num_threads(torch_before)
        cv2.setNumThreads(cv2_before)


def worker_reconstructor(settings: CollectionSettings):
    """This process's `Reconstructor` for ``settings``, built once (detectors loaded) and then reused."""
    key = repr([getattr(settings, name) for name in _MODEL_FIELDS])
    if _WORKER.get("key") != key:
        from msma.api import Reconstructor
        from msma.landmarks import detect_faces

        _WORKER["reconstructor"] = Reconstructor(
            method=settings.method, weights=settings.weights, face_model=settings.face_model,
            detector=settings.detector, device=settings.device, photometric=settings.photometric,
            max_side=settings.max_side)
        detect_faces(np.zeros((64, 64, 3), np.uint8), detector=settings.detector)  # load the models now
        _WORKER["key"] = key
    return _WORKER["reconstructor"]


def process_batch(photo_ids: Sequence[str], images: Sequence[Any], settings: CollectionSettings,
                  out_dir: str | os.PathLike) -> list[dict]:
    """Reconstruct one batch of photos and write its rows as one shard (the unit of resumption); returns the rows.

    ``images``: anything `msma.image_io.load_image` takes (paths, bytes), or ``{"bytes", "path"}`` dicts as a
    ``datasets.Image(decode=False)`` column holds them; a None or unreadable image gives an error row."""
    from msma.api import PhotoFailure
    from msma.landmarks import NoFaceError

    out_dir = Path(out_dir)
    reconstructor = worker_reconstructor(settings)
    sources = [_image_source(image) for image in images]
    items = reconstructor.estimate_many(sources, batch_size=len(sources), largest_only=settings.largest_only,
                                        max_faces=settings.max_faces, errors="return")
    rows: list[dict] = []
    for photo_id, item in zip(photo_ids, items):
        if isinstance(item, PhotoFailure):
            status = "no_face" if isinstance(item.error, NoFaceError) else "error"
            rows.append(_failure_row(photo_id, item.message, status, reconstructor.method, item.timings))
            continue
        mesh_files = [[] for _ in item.faces]
        if settings.mesh_formats:
            try:
                mesh_files = _export_meshes(reconstructor, item, photo_id, settings, out_dir)
            except Exception as error:  # noqa: BLE001 - a failed export is this photo's error row, not the run's end
                rows.append(_failure_row(photo_id, f"{type(error).__name__}: {error}", "error",
                                         reconstructor.method, item.timings))
                continue
        rows.extend(_face_rows(photo_id, item, mesh_files))
    if rows:
        write_shard(out_dir, rows)
    return rows


def _image_source(image: Any) -> Any:
    if isinstance(image, dict):  # datasets.Image(decode=False): bytes when embedded, else a path
        return image.get("bytes") or image.get("path")
    return image


def _export_meshes(reconstructor, estimate, photo_id: str, settings: CollectionSettings,
                   out_dir: Path) -> list[list[str]]:
    start = time.perf_counter()
    result = reconstructor.build_result(estimate, texture=settings.texture)
    files = []
    for face in result.faces:
        written = face.export(out_dir / MESH_DIR, stem=f"{_safe_stem(photo_id)}_face{face.index}",
                              formats=settings.mesh_formats, rigged=settings.rigged)
        files.append([str(Path(p).relative_to(out_dir)) for p in written.values()])
    share = (time.perf_counter() - start) / max(1, len(estimate.faces))
    for face in estimate.faces:
        face.timings["mesh"] = share
    return files


def _die_with_parent(parent_pid: int) -> None:
    """In a pool worker: exit as soon as the job's process is gone (killed), so no orphan keeps writing shards."""
    if os.getpid() == parent_pid:
        return
    if not _WORKER.get("death_signal") and sys.platform.startswith("linux"):
        try:  # PR_SET_PDEATHSIG: the kernel sends SIGKILL to this worker when its parent dies
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        _WORKER["death_signal"] = True
    if os.getppid() != parent_pid:
        os._exit(1)


def _start_worker(settings: CollectionSettings, parent_pid: int, dataset, image_column: str | None) -> None:
    """Pool initializer: die with the parent, then load the models once for every batch this worker will run."""
    _die_with_parent(parent_pid)
    _WORKER.update(parent_pid=parent_pid, settings=settings, dataset=dataset, image_column=image_column)
    limit_threads(settings.threads_per_worker)
    worker_reconstructor(settings)


def _images_of(refs: list, dataset, image_column: str | None) -> list:
    return refs if dataset is None else list(dataset.select(refs)[image_column])


def _run_pool_batch(photo_ids: list[str], refs: list, out_dir: str) -> int:
    _die_with_parent(_WORKER["parent_pid"])
    images = _images_of(refs, _WORKER["dataset"], _WORKER["image_column"])
    process_batch(photo_ids, images, _WORKER["settings"], out_dir)
    return len(photo_ids)


# ----------------------------------------------------------------------------------------------------- the job
@dataclass
class CollectionReport:
    photos: int  # in the source
    skipped: int  # already finished by an earlier run
    processed: int  # in this run
    faces: int  # face rows in the final table
    failed: int  # photos with an error / no_face row in the final table
    seconds: float  # this run, wall clock
    table: Path

    @property
    def photos_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def pending(source: CollectionSource, out_dir: str | os.PathLike) -> list[int]:
    """Positions of the source's photos that no finished shard of ``out_dir`` holds yet."""
    done = finished_photo_ids(out_dir)
    return [i for i, pid in enumerate(source.photo_ids) if pid not in done]


def _prepare_out_dir(out_dir: Path) -> None:
    _shard_dir(out_dir).mkdir(parents=True, exist_ok=True)
    for leftover in _shard_dir(out_dir).glob(".tmp-*"):  # a shard being written when the last run was killed
        leftover.unlink(missing_ok=True)


def batches_of(source: CollectionSource, todo: list[int], batch_size: int) -> Iterable[tuple[list[str], list]]:
    """(photo ids, image references) per batch: file paths for a folder, row positions for a dataset."""
    for first in range(0, len(todo), batch_size):
        positions = todo[first : first + batch_size]
        refs = [source.paths[i] for i in positions] if source.paths is not None else positions
        yield [source.photo_ids[i] for i in positions], refs


def run_collection(source: CollectionSource, out_dir: str | os.PathLike, settings: CollectionSettings | None = None,
                   progress: bool = True) -> CollectionReport:
    """Reconstruct every photo of ``source`` not yet finished in ``out_dir``, then write ``OUT/faces.parquet``.

    One worker runs in this process; more run in a pool of ``spawn``ed processes (not forked: mediapipe cannot run
    in a child forked from a process that has already used it), each holding one `Reconstructor`, at most two
    batches per worker queued at a time."""
    from tqdm import tqdm

    settings = settings or CollectionSettings()
    settings.validate()
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    start = time.perf_counter()
    todo = pending(source, out_dir)
    workers = min(settings.workers, -(-len(todo) // settings.batch_size))
    with tqdm(total=len(todo), desc="reconstructing", unit="photo", disable=not progress or not todo) as bar:
        if workers <= 1:
            with limited_threads(settings.threads_per_worker):
                for photo_ids, refs in batches_of(source, todo, settings.batch_size):
                    process_batch(photo_ids, _images_of(refs, source.dataset, source.image_column), settings,
                                  out_dir)
                    bar.update(len(photo_ids))
        elif workers > 1:
            _run_pool(source, todo, settings, out_dir, workers, bar)
    seconds = time.perf_counter() - start
    table = consolidate(out_dir)
    status = pq.read_table(table, columns=["status"]).column("status").to_pylist()
    ok = sum(s == "ok" for s in status)
    return CollectionReport(photos=len(source), skipped=len(source) - len(todo), processed=len(todo), faces=ok,
                            failed=len(status) - ok, seconds=seconds, table=table)


def _run_pool(source: CollectionSource, todo: list[int], settings: CollectionSettings, out_dir: Path, workers: int,
              bar) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(settings, os.getpid(), source.dataset, source.image_column)) as pool:
        in_flight: set = set()
        for photo_ids, refs in batches_of(source, todo, settings.batch_size):
            if len(in_flight) >= 2 * workers:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:  # a worker's own failure (disk full, ...) ends the run; a rerun resumes
                    bar.update(future.result())
            in_flight.add(pool.submit(_run_pool_batch, photo_ids, refs, str(out_dir)))
        for future in as_completed(in_flight):
            bar.update(future.result())


def iter_rows(out_dir: str | os.PathLike, columns: Iterable[str] | None = None) -> Iterable[dict]:
    """Rows of the consolidated table, one dict each (for small tables and tests)."""
    yield from pq.read_table(Path(out_dir) / TABLE_NAME, columns=list(columns) if columns else None).to_pylist()
