"""Does a face-recognition embedding see ICT identity? (issue 10, option b: MICA-style embedding -> identity.)

    .venv/bin/python benchmarks/embedding_identity.py [--train 1500] [--test 300]

MICA learns 3D identity from a face-recognition embedding. Before building that on dlib's offline 128-D ResNet
(`msma.face_embedding.DlibFaceEmbedder`), this measures whether the embedding carries the identity of the faces we
can train it on: synthetic ICT faces (`msma.synth`, 224 aligned crops, all camera effects, real-photo backgrounds),
whose identity is known exactly.

1. **Same vs different identity**: each test identity is rendered twice with independent expression, pose, light,
   skin and hair; ROC AUC of the embedding distance for same-identity pairs against different-identity pairs, and
   the mean distances. For reference the same AUC on real photos is ~0.99 (dlib: 99.38 % on LFW).
2. **Regression**: ridge from the embedding to the 100 identity coefficients, trained on ``--train`` faces (seed
   5000; the ridge strength chosen by 5-fold cross-validation on them), scored on the test faces (seed 6000): R^2
   and the face-region vertex error of the regressed neutral shape against the untouched mean face.

Two chip framings: the aligned 224 crop resized to 150 (what ``--identity-net dlib`` in training uses) and dlib's own
chip (its 5-point predictor on the crop, ``dlib.get_face_chip``, what the descriptor was trained on).
Writes benchmarks/results/embedding_identity.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
BACKGROUNDS = REPO.parent / "shared" / "data" / "faces_in_the_wild"
FRAMINGS = ("crop_resized", "dlib_chip")


class Embedder:
    """Both framings of one 224 crop -> 128-D embeddings (torch port; dlib only for its chip geometry)."""

    def __init__(self) -> None:
        from msma.face_embedding import CHIP_SIZE, DlibChipper, DlibFaceEmbedder

        self.chip = DlibChipper()
        self.net = DlibFaceEmbedder.from_package()
        self.size = CHIP_SIZE

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        import cv2

        resized = np.stack([cv2.resize(c, (self.size, self.size), interpolation=cv2.INTER_AREA) for c in crops])
        chips = np.stack([self.chip(c) for c in crops])
        return {"crop_resized": self.net.embed_uint8(resized), "dlib_chip": self.net.embed_uint8(chips)}


def render(model, seed: int, n: int, identities: np.ndarray | None = None, batch: int = 16):
    """``n`` synthetic crops (uint8) of ``seed`` and their identities; with ``identities`` the faces keep the other
    random choices of their sample but wear these identities."""
    from msma.synth import SyntheticFaceGenerator

    gen = SyntheticFaceGenerator(model, seed=seed, image_size=224, backgrounds=BACKGROUNDS if BACKGROUNDS.is_dir()
                                 else None)
    if identities is not None:
        draw = gen.sample_parameters
        gen.sample_parameters = lambda i: {**draw(i), "identity": identities[i]}
    crops, ids = [], []
    for start in range(0, n, batch):
        b = gen.render_indices(range(start, min(n, start + batch)))
        crops.append((b.images.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8))
        ids.append(b.coefficients.identity.cpu().numpy())
    return np.concatenate(crops), np.concatenate(ids)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean(0)))
    return w, mu, sd


def ridge_predict(fit, x: np.ndarray, y_mean: np.ndarray) -> np.ndarray:
    w, mu, sd = fit
    return (x - mu) / sd @ w + y_mean


def choose_alpha(x: np.ndarray, y: np.ndarray, alphas=(0.1, 1, 10, 100, 1000, 10000), folds: int = 5) -> float:
    parts = np.array_split(np.arange(len(x)), folds)
    best, best_err = alphas[0], np.inf
    for alpha in alphas:
        err = 0.0
        for k in range(folds):
            test = parts[k]
            train = np.setdiff1d(np.arange(len(x)), test)
            pred = ridge_predict(ridge_fit(x[train], y[train], alpha), x[test], y[train].mean(0))
            err += float(((pred - y[test]) ** 2).sum())
        if err < best_err:
            best, best_err = alpha, err
    return best


def main() -> int:
    import torch

    from benchmarks.identity_roc import roc_auc
    from msma.face_model import FaceModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="embedding_identity")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = FaceModel.ict()
    embed = Embedder()
    train_crops, train_ids = render(model, 5000, args.train)
    test_ids = np.random.default_rng(6000).normal(0, 0.9, (args.test, model.n_identity)).astype(np.float32)
    views = [render(model, seed, args.test, identities=test_ids)[0] for seed in (6000, 6001)]
    train_emb = embed(train_crops)
    view_emb = [embed(v) for v in views]
    face = model.face_vertices.cpu().numpy()

    def neutral_mm(identity: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ident = torch.as_tensor(identity, dtype=torch.float32)
            v = model(ident, torch.zeros(len(ident), model.n_expression))[:, face]
        return v.cpu().numpy() * 100.0  # model units are dm

    truth_mm = neutral_mm(test_ids)
    mean_err = float(np.linalg.norm(neutral_mm(np.zeros_like(test_ids)) - truth_mm, axis=-1).mean())
    out: dict = {"train_faces": args.train, "test_identities": args.test, "train_seed": 5000,
                 "test_seeds": [6000, 6001], "mean_face_vertex_error_mm": round(mean_err, 3), "framings": {}}
    for framing in FRAMINGS:
        a, b = view_emb[0][framing], view_emb[1][framing]
        dist = np.linalg.norm(a[:, None] - b[None], axis=-1)
        same = np.eye(len(dist), dtype=bool)
        auc = roc_auc(-dist.reshape(-1), same.reshape(-1))
        alpha = choose_alpha(train_emb[framing], train_ids)
        fit = ridge_fit(train_emb[framing], train_ids, alpha)
        pred = np.mean([ridge_predict(fit, e[framing], train_ids.mean(0)) for e in view_emb], axis=0)
        r2 = 1 - ((pred - test_ids) ** 2).sum(0) / ((test_ids - test_ids.mean(0)) ** 2).sum(0)
        err = float(np.linalg.norm(neutral_mm(pred) - truth_mm, axis=-1).mean())
        out["framings"][framing] = {
            "same_identity_auc": round(float(auc), 4),
            "mean_distance_same": round(float(dist[same].mean()), 4),
            "mean_distance_different": round(float(dist[~same].mean()), 4),
            "ridge_alpha": alpha, "ridge_r2_mean": round(float(r2.mean()), 4),
            "ridge_r2_first10": [round(float(v), 3) for v in r2[:10]],
            "ridge_vertex_error_mm": round(err, 3), "ridge_vs_mean_face": round(err / mean_err, 4)}
    out["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1))
    lines = ["# Face-recognition embedding vs ICT identity (synthetic faces)", "",
             f"`benchmarks/embedding_identity.py --train {args.train} --test {args.test}`; mean face vertex error "
             f"{mean_err:.3f} mm on the test identities.", "",
             "| framing | same-identity AUC | distance same / different | ridge R^2 (mean) | ridge vertex mm "
             "| vs mean face |",
             "|---|---|---|---|---|---|"]
    for framing, r in out["framings"].items():
        lines.append(f"| {framing} | {r['same_identity_auc']:.3f} | {r['mean_distance_same']:.3f} / "
                     f"{r['mean_distance_different']:.3f} | {r['ridge_r2_mean']:.3f} | "
                     f"{r['ridge_vertex_error_mm']:.3f} | "
                     f"{r['ridge_vs_mean_face']:.3f}x |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
