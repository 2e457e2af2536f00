"""Quality report: inter-labeler disagreement (NME) and how far labelers moved the pre-labels.

For every face, the latest version each person saved (from the history, so nothing needs to be double-entered) is
compared pairwise. NME = mean point distance over points both marked in the image, divided by the outer-eye-corner
distance (points 36-45), the 300-W convention. Pre-labels (users ``model:...``) are compared with the current
annotation separately, as the pre-labeller's error.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotate.skeleton import GROUPS, N_POINTS, OUTSIDE, POINT_NAMES, colour_of
from annotate.store import Store
from msma.landmarks.metrics import nme


@dataclass
class PairDisagreement:
    image_id: int
    image_name: str
    face: int
    user_a: str
    user_b: str
    nme: float
    per_point: np.ndarray  # (68,) normalised distance, NaN where not comparable


@dataclass
class QualityReport:
    pairs: list[PairDisagreement] = field(default_factory=list)
    prelabel_errors: list[PairDisagreement] = field(default_factory=list)  # user_a = model, user_b = final editor

    def per_user_pair(self) -> dict[tuple[str, str], dict[str, float]]:
        out: dict[tuple[str, str], list[float]] = {}
        for p in self.pairs:
            out.setdefault(tuple(sorted((p.user_a, p.user_b))), []).append(p.nme)
        return {k: {"faces": len(v), "mean_nme": float(np.mean(v)), "median_nme": float(np.median(v)),
                    "max_nme": float(np.max(v))} for k, v in sorted(out.items())}

    def per_point(self) -> np.ndarray:
        if not self.pairs:
            return np.full(N_POINTS, np.nan)
        stack = np.stack([p.per_point for p in self.pairs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN
            return np.nanmean(stack, axis=0)

    def summary(self) -> str:
        lines = [f"inter-labeler pairs: {len(self.pairs)} face(s)"]
        for (a, b), s in self.per_user_pair().items():
            lines.append(f"  {a} vs {b}: {s['faces']} face(s), NME mean {s['mean_nme']:.4f}, "
                         f"median {s['median_nme']:.4f}, max {s['max_nme']:.4f}")
        if self.pairs:
            worst = sorted(self.pairs, key=lambda p: -p.nme)[:5]
            lines.append("  largest disagreements: " + ", ".join(
                f"{p.image_name}#{p.face} ({p.user_a}/{p.user_b}) {p.nme:.3f}" for p in worst))
        if self.prelabel_errors:
            errs = [p.nme for p in self.prelabel_errors]
            lines.append(f"pre-label vs final: {len(errs)} face(s), NME mean {np.mean(errs):.4f}, "
                         f"median {np.median(errs):.4f}")
        return "\n".join(lines)


def _compare(a_pts: np.ndarray, a_vis: np.ndarray, b_pts: np.ndarray, b_vis: np.ndarray) -> tuple[float, np.ndarray]:
    mask = (a_vis != OUTSIDE) & (b_vis != OUTSIDE)
    value = nme(b_pts, a_pts, mask)  # normalised by a's eyes
    ref = a_pts if np.isfinite(a_pts[[36, 45]]).all() else b_pts
    norm = float(np.linalg.norm(ref[45] - ref[36])) or 1.0
    per_point = np.where(mask, np.linalg.norm(a_pts - b_pts, axis=1) / norm, np.nan)
    return value, per_point


def quality_report(store: Store, project: Any = None, *, include_import: bool = False) -> QualityReport:
    report = QualityReport()
    for rec in store.list_images(project, order="id"):
        history = store.history(rec.id)
        faces = sorted({h.face for h in history})
        current = {a.face: a for a in store.get_annotations(rec.id)}
        for face in faces:
            if face not in current:
                continue  # deleted
            latest: dict[str, Any] = {}
            model = None
            for h in (h for h in history if h.face == face):
                user = h.user or "anonymous"
                if h.source.startswith("prelabel") or user.startswith("model:"):
                    model = model or h
                    continue
                if h.source == "import" and not include_import:
                    continue
                if h.deleted:
                    latest.pop(user, None)
                    continue
                latest[user] = h
            for (ua, ha), (ub, hb) in itertools.combinations(sorted(latest.items()), 2):
                value, per_point = _compare(ha.points, ha.visibility, hb.points, hb.visibility)
                if np.isfinite(value):
                    report.pairs.append(PairDisagreement(rec.id, rec.name, face, ua, ub, value, per_point))
            final = current[face]
            if model is not None and final.source != model.source:
                value, per_point = _compare(model.points, model.visibility, final.points, final.visibility)
                if np.isfinite(value):
                    report.prelabel_errors.append(PairDisagreement(rec.id, rec.name, face, model.user or "model",
                                                                   final.updated_by or "?", value, per_point))
    return report


def quality_figure(report: QualityReport) -> Any:
    """Plotly figure: NME histogram per labeler pair, mean disagreement per landmark (coloured by group)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6],
                        subplot_titles=("NME per face (labeler pairs / pre-label)", "mean disagreement per landmark"))
    groups: dict[str, list[float]] = {}
    for p in report.pairs:
        groups.setdefault(f"{p.user_a} vs {p.user_b}", []).append(p.nme)
    for name, values in sorted(groups.items()):
        fig.add_trace(go.Histogram(x=values, name=name, opacity=0.7, nbinsx=30), row=1, col=1)
    if report.prelabel_errors:
        fig.add_trace(go.Histogram(x=[p.nme for p in report.prelabel_errors], name="pre-label vs final",
                                   opacity=0.5, nbinsx=30), row=1, col=1)
    per_point = report.per_point()
    colours = ["rgb({},{},{})".format(*colour_of(i)) for i in range(N_POINTS)]
    fig.add_trace(go.Bar(x=list(range(N_POINTS)), y=np.nan_to_num(per_point).tolist(), marker_color=colours,
                         hovertext=[POINT_NAMES[i] for i in range(N_POINTS)], name="per landmark", showlegend=False),
                  row=1, col=2)
    for group, first, _last, _closed, _colour in GROUPS:
        fig.add_annotation(x=first, y=0, text=group.replace("_", " "), showarrow=False, textangle=-90,
                           yanchor="bottom", font={"size": 9}, row=1, col=2)
    fig.update_layout(barmode="overlay", height=420, margin={"l": 40, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.15})
    fig.update_xaxes(title_text="NME (inter-ocular)", row=1, col=1)
    fig.update_xaxes(title_text="landmark index", row=1, col=2)
    fig.update_yaxes(title_text="faces", row=1, col=1)
    fig.update_yaxes(title_text="NME", row=1, col=2)
    return fig
