"""The Reconstruct tab's pictures: the face picker's crops, the blendshape chart, the pose table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from msma.app.state import Session


def face_gallery(session: Session, size: int = 128) -> list[tuple[np.ndarray, str]]:
    """One square crop per detected face (largest first) with a caption, for the face picker."""
    import cv2

    items = []
    h, w = session.photo.shape[:2]
    for i, det in enumerate(session.detections):
        x0, y0, x1, y1 = np.asarray(det.box, dtype=np.float64)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.7
        a, b = int(max(0, cx - half)), int(max(0, cy - half))
        c, d = int(min(w, cx + half)), int(min(h, cy + half))
        crop = session.photo[b:max(d, b + 1), a:max(c, a + 1)]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        tag = " (largest)" if i == 0 else ""
        done = " ✓" if i in session.faces else ""
        items.append((crop, f"face {i + 1}{tag}{done}"))
    return items


def pose_markdown(face) -> str:
    p = face.pose
    return (f"| pitch | yaw | roll |\n|---|---|---|\n| {p.pitch:+.1f}° | {p.yaw:+.1f}° | {p.roll:+.1f}° |\n\n"
            f"landmark error {face.landmark_error_px:.1f} px · method `{face.method}` · detector `{face.detector}`")


def blendshape_figure(blendshapes: Mapping[str, float], title: str | None = None):
    """Plotly bar chart of the expression weights (ICT's 53 ARKit-named blendshapes, 0..1)."""
    import plotly.graph_objects as go

    names = list(blendshapes)
    values = [float(blendshapes[n]) for n in names]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color="#4c78a8",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"{len(names)} ARKit expression weights", yaxis={"range": [0, 1],
                      "title": "weight"}, xaxis={"tickangle": -60, "tickfont": {"size": 9}},
                      margin={"l": 40, "r": 10, "t": 40, "b": 110}, height=380)
    return fig


