"""Renderer speed benchmark: rasterise + interpolate, and backward, on the ICT head mesh.

    .venv/bin/python benchmarks/render_speed.py                  # default cases
    .venv/bin/python benchmarks/render_speed.py --batch 1 16 --size 224 1024 --backend torch --device cpu

The mesh (26719 vertices, 52220 triangles) is projected with the MSMA camera (ARCHITECTURE.md: focal 1015, principal
point 112, camera at z = 10) and then scaled in the image plane so that the head spans ``--fill`` of the image width
(150/224 by default, i.e. ~150 px at 224 and ~690 px at 1024). Without the model file a UV-sphere of similar size is
used.

Columns: rasterisation only; rasterisation + colour interpolation (total and per image); a photometric-style forward
(``render_colors``, loss) + backward to vertices and colours; and the backward part alone (difference of the two).
On a machine shared with other jobs, ``--cpu-time --threads 1`` gives stable numbers (process CPU time).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msma.render import Renderer  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared/assets/ict_face_model.npz"
MODEL = Path(os.environ.get("MSMA_FACE_MODEL", DEFAULT_MODEL))


def load_mesh() -> tuple[np.ndarray, np.ndarray, str]:
    if MODEL.is_file():
        data = np.load(MODEL)
        verts = data["neutral"].astype(np.float32) / 10.0  # cm -> dm
        verts -= verts.mean(0)
        return verts, data["triangles"].astype(np.int64), "ICT neutral"
    n_lat, n_lon = 115, 230  # ~26k vertices, ~52k triangles
    lat = np.linspace(0, math.pi, n_lat)
    lon = np.linspace(0, 2 * math.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    verts = np.stack([np.sin(la) * np.cos(lo), np.cos(la), np.sin(la) * np.sin(lo)], -1).reshape(-1, 3) * 1.2
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [[a, c, b], [b, c, d]]
    return verts.astype(np.float32), np.asarray(faces, np.int64), "UV sphere"


def project(verts: np.ndarray, size: int, fill: float, yaw: float) -> np.ndarray:
    """MSMA camera projection, then rescaled so the mesh spans fill * size pixels, centred."""
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)
    v = verts @ rot.T
    depth = 10.0 - v[:, 2]
    x = 112 + 1015 * v[:, 0] / depth
    y = 112 - 1015 * v[:, 1] / depth
    xy = np.stack([x, y], -1)
    centre = (xy.max(0) + xy.min(0)) / 2
    scale = fill * size / (xy[:, 0].max() - xy[:, 0].min())
    xy = (xy - centre) * scale + size / 2
    return np.concatenate([xy, depth[:, None]], -1).astype(np.float32)


def timeit(fn, repeats: int, device: torch.device, cpu_time: bool) -> float:
    """Median seconds per call: wall clock, or process CPU time (robust to a loaded machine; with N threads it is up
    to N x the wall time)."""
    clock = time.process_time if cpu_time else time.perf_counter
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return float(np.min(times) if cpu_time else np.median(times))


def _raster_interp(renderer: Renderer, sv: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    return renderer.interpolate(renderer.rasterize(sv, faces), colors, faces)


def _fwd(renderer: Renderer, sv: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> None:
    out = renderer.render_colors(sv, faces, colors)
    out.image.square().mean()


def _fwd_bwd(renderer: Renderer, sv: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> None:
    out = renderer.render_colors(sv, faces, colors)
    out.image.square().mean().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs="+", default=[224, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--fill", type=float, default=150 / 224, help="mesh width as a fraction of the image width")
    parser.add_argument("--backend", default="torch", choices=["auto", "torch", "pytorch3d"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cull-backfaces", action="store_true")
    parser.add_argument("--cpu-time", action="store_true", help="report process CPU time instead of wall time")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave)")
    parser.add_argument("--max-batch-large", type=int, default=1, help="skip batches above this for sizes > 512")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    verts, faces_np, name = load_mesh()
    faces = torch.from_numpy(faces_np).to(device)
    print(
        f"mesh: {name}, {len(verts)} vertices, {len(faces_np)} triangles; device {device}, "
        f"backend {args.backend}, threads {torch.get_num_threads()}, cull_backfaces {args.cull_backfaces}, "
        f"{'CPU time (min)' if args.cpu_time else 'wall time (median)'}"
    )
    header = f"{'size':>6} {'batch':>5} {'covered px':>10} {'raster ms':>10} {'+interp ms':>10} {'per img ms':>10}"
    header += f" {'fwd+bwd ms':>10} {'bwd ms':>8}"
    print(header)
    print("-" * len(header))
    for size in args.size:
        renderer = Renderer(size, backend=args.backend, cull_backfaces=args.cull_backfaces)
        for batch in args.batch:
            if size > 512 and batch > args.max_batch_large:
                continue
            yaws = np.linspace(-0.4, 0.4, batch) if batch > 1 else [0.0]
            sv = torch.from_numpy(np.stack([project(verts, size, args.fill, y) for y in yaws])).to(device)
            colors = torch.rand(batch, len(verts), 3, device=device)

            sv_g = sv.clone().requires_grad_(True)
            col_g = colors.clone().requires_grad_(True)
            raster = partial(renderer.rasterize, sv, faces)
            raster_interp = partial(_raster_interp, renderer, sv, faces, colors)
            fwd_bwd = partial(_fwd_bwd, renderer, sv_g, faces, col_g)
            fwd = partial(_fwd, renderer, sv_g, faces, col_g)

            covered = int(raster().mask.sum()) // batch
            t_r = timeit(raster, args.repeats, device, args.cpu_time)
            t_ri = timeit(raster_interp, args.repeats, device, args.cpu_time)
            t_fb = timeit(fwd_bwd, args.repeats, device, args.cpu_time)
            t_bwd = t_fb - timeit(fwd, args.repeats, device, args.cpu_time)
            print(
                f"{size:>6} {batch:>5} {covered:>10} {t_r * 1e3:>10.1f} {t_ri * 1e3:>10.1f} "
                f"{t_ri * 1e3 / batch:>10.1f} {t_fb * 1e3:>10.1f} {t_bwd * 1e3:>8.1f}"
            )


if __name__ == "__main__":
    main()
