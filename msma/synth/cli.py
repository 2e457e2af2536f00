"""``python -m msma.synth``: pre-render a cache, preview a contact sheet, or build a texture bank."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from msma.face_model import FaceModel
from msma.synth.cache import prerender_cache
from msma.synth.generator import SyntheticBatch, SyntheticFaceGenerator
from msma.synth.texture_bank import build_texture_bank


def save_preview(batch: SyntheticBatch, path: str | os.PathLike, columns: int = 8, landmarks: bool = True) -> None:
    """A contact sheet of a batch (with landmarks) as PNG, to eyeball realism."""
    import cv2

    imgs = (batch.images.permute(0, 2, 3, 1).cpu().numpy() * 255).astype(np.uint8)
    tiles = []
    for b, img in enumerate(imgs):
        img = np.ascontiguousarray(img)
        if landmarks:
            for x, y in batch.landmarks2d[b].cpu().numpy():
                cv2.circle(img, (int(x), int(y)), 1, (0, 255, 0), -1)
        tiles.append(img)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.concatenate(rows, 0)[..., ::-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m msma.synth",
                                     description="Pre-render synthetic training faces to npz shards.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--backgrounds", default=None, help="folder of photos used for background crops")
    parser.add_argument("--texture-bank", default=None, help="npz with 'albedo' (K, N, 3) per-vertex albedos")
    parser.add_argument("--bank-probability", type=float, default=0.5)
    parser.add_argument("--facial-features", action="store_true",
                        help="paint eyebrows and lip colour on the procedural skin (off: as earlier caches)")
    parser.add_argument("--shards", default=None, help="e.g. 0-7 or 1,3,5 (split work over processes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preview", default=None, help="write a PNG contact sheet of 16 samples and exit")
    parser.add_argument("--build-bank", default=None, metavar="REAL_NPZ",
                        help="unwrap skin albedos from a real-photo cache (python -m msma.data) into --out (npz) "
                             "and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = FaceModel.ict()
    if args.build_bank:
        with np.load(args.build_bank) as z:
            albedo = build_texture_bank(model, z["images"], z["landmarks"])
        np.savez_compressed(args.out, albedo=albedo)
        print(f"{len(albedo)} albedos -> {args.out}")
        return
    bank = np.load(args.texture_bank)["albedo"].astype(np.float32) if args.texture_bank else None
    if args.preview:
        gen = SyntheticFaceGenerator(model, seed=args.seed, image_size=args.image_size, backgrounds=args.backgrounds,
                                     texture_bank=bank, facial_features=args.facial_features)
        save_preview(gen.sample(16), args.preview)
        return
    shards = None
    if args.shards:
        if "-" in args.shards:
            a, b = args.shards.split("-")
            shards = list(range(int(a), int(b) + 1))
        else:
            shards = [int(s) for s in args.shards.split(",")]
    t0 = time.time()
    paths = prerender_cache(model, args.out, args.n, args.seed, args.image_size, args.shard_size, args.backgrounds,
                            bank, shards, bank_probability=args.bank_probability,
                            facial_features=args.facial_features)
    print(f"{len(paths)} shards in {args.out} ({time.time() - t0:.0f} s)")
