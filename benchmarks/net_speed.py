"""Throughput of the MSMA network variants (images/s, inference) on CPU and, when present, CUDA.

    .venv/bin/python benchmarks/net_speed.py [--threads 2] [--size 224] [--seconds 4] [--configs light,ablation,paper]
        [--weights light=weights/msma_light.safetensors] [--out benchmarks/results --name net_speed]

Reports, per config and batch size (1 and 16), the median and the best wall-clock images/s over repeated forward
passes (the best is the figure least disturbed by other processes on a shared machine), plus parameter counts.
The 1-minute load average is printed before and after: on a shared machine a load above the thread count means the
figures are depressed by other processes; rerun when it is quiet. (A CPU-time based estimate was tried and dropped:
OpenMP threads spin while their partner is descheduled, so CPU time inflates under load just as wall time does.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msma.net import MSMANet, NetworkConfig, read_checkpoint_metadata  # noqa: E402

CONFIGS: dict[str, Callable[[], NetworkConfig]] = {
    "light": NetworkConfig.light,
    "light-ablation": lambda: NetworkConfig.plain_resnet(width=0.5),
    "resnet18": NetworkConfig,
    "paper": NetworkConfig.paper,
    "paper-ablation": lambda: NetworkConfig.paper(fusion=False, attention=False),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})"
    except OSError:  # not available on Windows
        return "n/a"


def throughput(
    model: MSMANet, batch: int, size: int, device: torch.device, seconds: float, max_iters: int = 50
) -> tuple[float, float]:
    """(median, best) images/s of model(images (batch, 3, size, size)) under inference_mode."""
    x = torch.rand(batch, 3, size, size, device=device)
    times: list[float] = []

    with torch.inference_mode():
        model(x)  # warm-up (allocations, kernel selection)
        _sync(device)
        start = time.perf_counter()
        while len(times) < 2 or (time.perf_counter() - start < seconds and len(times) < max_iters):
            t = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times), batch / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=4.0, help="time budget per measurement")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--configs", default="light,light-ablation,paper", help=f"any of {','.join(CONFIGS)}")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                        help="also time the architecture stored in these checkpoints (config only, random weights)")
    parser.add_argument("--out", default=None, help="write NAME.json and NAME.md here")
    parser.add_argument("--name", default="net_speed")
    args = parser.parse_args()
    configs = {name: CONFIGS[name] for name in args.configs.split(",") if name}
    for item in args.weights:
        name, _, path = item.partition("=")
        configs[name] = lambda path=path: read_checkpoint_metadata(path)[0]

    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    batches = [int(b) for b in args.batches.split(",")]
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, input {args.size}x{args.size}, fp32")
    load_before = _load()
    print(f"load average before: {load_before}")
    rows = []
    header = f"{'config':<16} {'backbone':<9} {'width':>5} {'params (M)':>10} {'device':<6} {'batch':>5} "
    header += f"{'img/s median':>12} {'img/s best':>10}"
    print(header)
    print("-" * len(header))
    for name, make in configs.items():
        cfg = make()
        torch.manual_seed(0)
        model = MSMANet(cfg).eval()
        params = model.num_parameters() / 1e6
        for device in devices:
            model.to(device)
            for batch in batches:
                med, best = throughput(model, batch, args.size, device, args.seconds)
                print(
                    f"{name:<16} {cfg.backbone:<9} {cfg.width:>5.2f} {params:>10.2f} {device.type:<6} {batch:>5} "
                    f"{med:>12.1f} {best:>10.1f}",
                    flush=True,
                )
                rows.append({"config": name, "backbone": cfg.backbone, "width": cfg.width, "params_m": round(params, 3),
                             "device": device.type, "batch": batch, "images_per_s_median": round(med, 1),
                             "images_per_s_best": round(best, 1)})
        model.to("cpu")
    load_after = _load()
    print(f"load average after: {load_after}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": args.threads, "input": args.size, "load_before": load_before,
                "load_after": load_after}
        (out / f"{args.name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        lines = [f"# Network speed ({args.size} x {args.size} input, {args.threads} CPU threads, fp32; load average "
                 f"{load_before} before, {load_after} after)", "",
                 "| config | backbone | width | params (M) | device | batch | img/s median | img/s best |",
                 "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['config']} | {r['backbone']} | {r['width']} | {r['params_m']} | {r['device']} | {r['batch']} "
                  f"| {r['images_per_s_median']} | {r['images_per_s_best']} |" for r in rows]
        (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
