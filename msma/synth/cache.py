"""Pre-rendered synthetic faces: npz shards written by :func:`prerender_cache`, read by :class:`SyntheticCache`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from msma.face_model import Coefficients, FaceModel
from msma.synth.generator import SyntheticFaceGenerator


def prerender_cache(
    model: FaceModel,
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    image_size: int = 128,
    shard_size: int = 500,
    backgrounds=None,
    texture_bank=None,
    shards: Sequence[int] | None = None,
    batch: int = 8,
    progress: bool = True,
    bank_probability: float = 0.5,
    facial_features: bool = False,
) -> list[Path]:
    """Render samples ``0..n-1`` of ``seed`` to ``out_dir/shard_XXXXX.npz``; existing shards are kept (resumable).

    ``shards``: only these shard numbers (to split the work over processes).
    Shard arrays: images uint8 (n, S, S, 3), mask uint8 (n, S, S), landmarks float32 (n, 68, 2) image pixels,
    one float16 array per coefficient field, texture_valid bool, indices int64.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = SyntheticFaceGenerator(model, seed=seed, image_size=image_size, backgrounds=backgrounds,
                                 texture_bank=texture_bank, bank_probability=bank_probability,
                                 facial_features=facial_features)
    n_shards = math.ceil(n / shard_size)
    written = []
    todo = list(range(n_shards) if shards is None else shards)
    meta = {"seed": seed, "n": n, "image_size": image_size, "shard_size": shard_size, "model": model.info.name,
            "shards": todo, "backgrounds": str(backgrounds) if backgrounds is not None else None,
            "texture_bank": None if texture_bank is None else len(texture_bank), "bank_probability": bank_probability,
            "facial_features": facial_features}
    (out / f"meta_{todo[0] if todo else 0:05d}.json").write_text(json.dumps(meta, indent=1))
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    for k in todo:
        path = out / f"shard_{k:05d}.npz"
        if path.exists():
            written.append(path)
            continue
        start, stop = k * shard_size, min(n, (k + 1) * shard_size)
        parts = []
        bar = tqdm(total=stop - start, desc=path.name, disable=not progress) if tqdm else None
        for i in range(start, stop, batch):
            parts.append(gen.render_indices(range(i, min(stop, i + batch))))
            if bar:
                bar.update(parts[-1].batch_size)
        if bar:
            bar.close()
        arrays = {
            "images": np.concatenate(
                [(p.images.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8) for p in parts]
            ),
            "mask": np.concatenate([p.mask.cpu().numpy().astype(np.uint8) for p in parts]),
            "landmarks": np.concatenate([p.landmarks2d.cpu().numpy().astype(np.float32) for p in parts]),
            "texture_valid": np.concatenate([p.texture_valid.cpu().numpy() for p in parts]),
            "indices": np.concatenate([p.indices.numpy() for p in parts]),
        }
        for f in fields(Coefficients):
            arrays[f.name] = np.concatenate([getattr(p.coefficients, f.name).cpu().numpy() for p in parts]).astype(
                np.float16
            )
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        written.append(path)
    return written


class SyntheticCache(torch.utils.data.Dataset):
    """All shards of a cache directory, held in memory (uint8). Items: dict of tensors (image float (3,S,S) ...)."""

    def __init__(self, folder: str | os.PathLike, max_items: int | None = None) -> None:
        paths = sorted(Path(folder).glob("shard_*.npz"))
        if not paths:
            raise FileNotFoundError(f"no shard_*.npz in {folder} (render one with `python -m msma.synth`)")
        data: dict[str, list] = {}
        for p in paths:
            with np.load(p) as z:
                for k in z.files:
                    data.setdefault(k, []).append(z[k])
        self.arrays = {k: np.concatenate(v) for k, v in data.items()}
        if max_items is not None:
            self.arrays = {k: v[:max_items] for k, v in self.arrays.items()}
        self.image_size = int(self.arrays["images"].shape[1])

    def __len__(self) -> int:
        return len(self.arrays["images"])

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """Items ``indices`` stacked, in one fancy-indexing call per array (what `__getitem__` gives, batched)."""
        a, idx = self.arrays, np.asarray(indices, dtype=np.int64)
        out = {
            "image": torch.from_numpy(a["images"][idx]).permute(0, 3, 1, 2).float() / 255.0,
            "mask": torch.from_numpy(a["mask"][idx].astype(bool)),
            "landmarks": torch.from_numpy(a["landmarks"][idx]),
            "texture_valid": torch.from_numpy(a["texture_valid"][idx].astype(bool)),
        }
        for f in fields(Coefficients):
            out[f.name] = torch.from_numpy(a[f.name][idx].astype(np.float32))
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = self.arrays
        item = {
            "image": torch.from_numpy(a["images"][i]).permute(2, 0, 1).float() / 255.0,
            "mask": torch.from_numpy(a["mask"][i].astype(bool)),
            "landmarks": torch.from_numpy(a["landmarks"][i]),
            "texture_valid": torch.tensor(bool(a["texture_valid"][i])),
        }
        for f in fields(Coefficients):
            item[f.name] = torch.from_numpy(a[f.name][i].astype(np.float32))
        return item
