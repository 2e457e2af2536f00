"""The collection job (msma.collection) on Ray: past one machine.

    pip install -r requirements-ray.txt
    python -m msma collection photos/ -o /shared/out --ray --workers 8                 # a local Ray instance
    python -m msma collection photos/ -o /shared/out --ray --ray-address auto          # on a node of a cluster
    python -m msma collection photos/ -o /shared/out --ray --ray-address ray://head:10001 --device cuda

``ray.data`` reads the images (``read_binary_files`` for a folder; the rows of a `datasets` dataset), and
``map_batches`` hands batches to ``--workers`` actors, each holding one `Reconstructor` for its whole life (one GPU
each with ``--device cuda``). An actor writes each batch as one shard with `msma.collection.process_batch`, so resume
(skip finished photo ids), error rows and the final ``faces.parquet`` are exactly those of the local job. On a
cluster, OUT and the photos must be on storage every node sees (NFS, a mounted bucket) and every node needs msma and
its requirements installed (or a Ray ``runtime_env``: ``run_collection_ray(..., runtime_env={...})``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from msma.collection import (
    CollectionReport,
    CollectionSettings,
    CollectionSource,
    _prepare_out_dir,
    consolidate,
    limit_threads,
    pending,
    process_batch,
    worker_reconstructor,
)

__all__ = ["RayBatchWorker", "run_collection_ray"]


class RayBatchWorker:
    """A ``map_batches`` actor: one `Reconstructor` per actor, one shard per batch."""

    def __init__(self, settings: CollectionSettings, out_dir: str, photo_ids: dict[str, str] | None = None,
                 dataset=None, image_column: str | None = None) -> None:
        self.settings, self.out_dir = settings, out_dir
        self.photo_ids, self.dataset, self.image_column = photo_ids, dataset, image_column
        limit_threads(settings.threads_per_worker)
        worker_reconstructor(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.dataset is not None:  # rows of a datasets.Dataset: photo_id + position
            ids = [str(v) for v in batch["photo_id"]]
            images = list(self.dataset.select([int(p) for p in batch["position"]])[self.image_column])
        else:  # read_binary_files: bytes + path
            ids = [self.photo_ids[os.path.abspath(str(p))] for p in batch["path"]]
            images = [bytes(b) for b in batch["bytes"]]
        rows = process_batch(ids, images, self.settings, self.out_dir)
        faces = {pid: 0 for pid in ids}
        for row in rows:
            faces[row["photo_id"]] += row["status"] == "ok"
        return {"photo_id": np.array(ids, dtype=object), "faces": np.array([faces[p] for p in ids])}


def run_collection_ray(source: CollectionSource, out_dir: str | os.PathLike,
                       settings: CollectionSettings | None = None, address: str | None = None,
                       progress: bool = True, num_cpus: int | None = None,
                       runtime_env: dict[str, Any] | None = None) -> CollectionReport:
    """`msma.collection.run_collection` on Ray: ``settings.workers`` actors. Joins the cluster at ``address``
    ("auto", "ray://head:10001") or starts a local instance (``num_cpus``) when Ray is not initialised yet, and
    shuts down only what it started."""
    import ray

    settings = settings or CollectionSettings()
    settings.validate()
    out_dir = Path(out_dir).resolve()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, runtime_env=runtime_env)
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        context.print_on_execution_start = False
        _prepare_out_dir(out_dir)
        start = time.perf_counter()
        todo = pending(source, out_dir)
        if todo:
            kwargs: dict[str, Any] = {"settings": settings, "out_dir": str(out_dir)}
            if source.paths is not None:
                paths = [os.path.abspath(source.paths[i]) for i in todo]
                kwargs["photo_ids"] = {p: source.photo_ids[i] for p, i in zip(paths, todo)}
                # reading is I/O (decoding is the actors' job): no CPU reserved, or actors holding every CPU of a
                # small cluster would starve the reads
                data = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0)
            else:
                kwargs.update(dataset=source.dataset, image_column=source.image_column)
                data = ray.data.from_items([{"photo_id": source.photo_ids[i], "position": i} for i in todo],
                                           override_num_blocks=max(1, -(-len(todo) // settings.batch_size)))
            gpu = settings.device == "cuda"
            results = data.map_batches(
                RayBatchWorker, fn_constructor_kwargs=kwargs, batch_size=settings.batch_size,
                compute=ray.data.ActorPoolStrategy(size=settings.workers), num_cpus=settings.threads_per_worker,
                num_gpus=1 if gpu else 0, batch_format="numpy")
            for _ in results.iter_batches(batch_size=None):
                pass
        seconds = time.perf_counter() - start
    finally:
        if started:
            ray.shutdown()
    table = consolidate(out_dir)
    import pyarrow.parquet as pq

    status = pq.read_table(table, columns=["status"]).column("status").to_pylist()
    ok = sum(s == "ok" for s in status)
    return CollectionReport(photos=len(source), skipped=len(source) - len(todo), processed=len(todo), faces=ok,
                            failed=len(status) - ok, seconds=seconds, table=table)
