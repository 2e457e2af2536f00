"""The synthetic faces' priors: what a random face's identity, expression, pose, light, skin and hair are drawn from
(see the distributions in ``msma.synth``)."""

from __future__ import annotations

import numpy as np

from msma.face_model import FaceModel

# light .. dark skin reflectance (linear-ish RGB); a face draws a tone on this segment (plus a small hue jitter)
SKIN_LIGHT = np.array([0.86, 0.68, 0.58], np.float32)
SKIN_DARK = np.array([0.40, 0.26, 0.18], np.float32)
FREQUENT_EXPRESSIONS = {"jawOpen": 3.0, "mouthSmile": 3.0, "eyeBlink": 2.0, "browInnerUp": 1.5, "mouthFunnel": 1.0}
HAIR_COLOURS = np.array(
    [[0.05, 0.04, 0.035], [0.18, 0.11, 0.07], [0.35, 0.24, 0.14], [0.65, 0.52, 0.32], [0.55, 0.55, 0.55]], np.float32
)
HAIR_PROBS = np.array([0.35, 0.3, 0.15, 0.1, 0.1])


def expression_tables(names: list[str]) -> tuple[np.ndarray, dict[int, int]]:
    """(probability of each blendshape being active, left <-> right partner of each _L / _R blendshape)."""
    weights = np.ones(len(names))
    for i, name in enumerate(names):
        for key, w in FREQUENT_EXPRESSIONS.items():
            if name.startswith(key):
                weights[i] = w
    partner = {}
    for i, name in enumerate(names):
        for a, b in (("_L", "_R"), ("_R", "_L")):
            if name.endswith(a) and name[:-2] + b in names:
                partner[i] = names.index(name[:-2] + b)
    return weights / weights.sum(), partner


def draw_parameters(rng: np.random.Generator, model: FaceModel, expr_probs: np.ndarray, expr_partner: dict[int, int],
                    n_bank: int | None = None, bank_probability: float = 0.5) -> dict[str, np.ndarray]:
    """All random choices of one face, drawn from ``rng`` (numpy). ``n_bank``: size of the texture bank (None: no
    bank); ``expr_probs`` / ``expr_partner``: from :func:`expression_tables`."""
    m = model
    p: dict[str, np.ndarray] = {}
    p["identity"] = rng.normal(0, rng.uniform(0.8, 1.0), m.n_identity).astype(np.float32)
    expr = np.zeros(m.n_expression, np.float32)
    lo, hi = m.expression_range if m.expression_range is not None else (-1.0, 1.0)
    if rng.random() > 0.25:
        k = int(rng.integers(1, 5))
        for i in rng.choice(m.n_expression, size=k, replace=False, p=expr_probs):
            w = rng.uniform(0.15, 1.0) if lo >= 0 else rng.normal(0, 1.0)
            expr[i] = w
            if i in expr_partner and rng.random() < 0.75:
                expr[expr_partner[i]] = np.clip(w + rng.normal(0, 0.1), lo, hi)
    p["expression"] = np.clip(expr, lo, hi).astype(np.float32)
    yaw = rng.normal(0, 20) if rng.random() < 0.5 else rng.uniform(-60, 60)
    pitch = rng.uniform(-25, 25)
    roll = np.clip(rng.normal(0, 8), -20, 20)
    p["angles"] = np.radians([pitch, np.clip(yaw, -60, 60), roll]).astype(np.float32)
    # albedo: Laplacian modes + global tone
    tex = np.zeros(m.n_texture, np.float32)
    if m.info.name == "ict" and m.n_texture > 3:
        tex[3:] = rng.normal(0, 1, m.n_texture - 3)
        tone = SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * rng.beta(1.1, 2.0)
        tone = tone * (1 + rng.normal(0, 0.04, 3))
        tex[:3] = (tone - m.albedo_mean[0].cpu().numpy()) / 0.1
    else:
        tex[:] = rng.normal(0, 1, m.n_texture)
    p["texture"] = tex
    light = np.zeros((3, 9), np.float32)
    mono = np.zeros(9, np.float32)
    mono[0] = rng.uniform(-0.1, 0.45)
    direction = rng.normal(0, 1, 3) * np.array([1.0, 0.7, 1.0])
    direction[2] = abs(direction[2]) * (1 if rng.random() < 0.9 else -0.3)  # light mostly from the front
    direction /= np.linalg.norm(direction) + 1e-9
    strength = rng.uniform(0.0, 0.35)
    mono[1:4] = strength * np.array([-direction[1], direction[2], -direction[0]])
    mono[4:9] = rng.normal(0, 0.04, 5)
    tint = 1 + rng.normal(0, 0.05, 3) * (rng.random() < 0.5)
    light[:] = mono[None] * tint[:, None]
    light[:, 0] = (mono[0] + 0.8) * tint - 0.8  # tint the total DC (ambient included)
    p["lighting"] = light.reshape(27)
    p["jitter"] = np.array([rng.normal(0, 0.03), rng.normal(0, 3), rng.normal(0, 3)], np.float32)
    p["bank"] = np.array(
        int(rng.integers(n_bank))
        if n_bank is not None and rng.random() < bank_probability
        else -1
    )
    # appearance not in the model
    p["iris_colour"] = (
        np.array([0.25, 0.15, 0.08]) * rng.uniform(0.4, 1.2)
        if rng.random() < 0.8
        else np.array([0.25, 0.35, 0.45]) * rng.uniform(0.6, 1.2)
    ).astype(np.float32)
    p["hair"] = np.array(
        [rng.random() < 0.75, rng.choice(len(HAIR_COLOURS), p=HAIR_PROBS), rng.uniform(0.85, 1.35)], np.float32
    )
    p["effects_seed"] = np.array(rng.integers(2**31 - 1))
    return p
