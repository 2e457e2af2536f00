"""The iBUG 68-point layout: groups, names, skeleton edges and colours."""

from __future__ import annotations

import numpy as np

N_POINTS = 68

# Visibility flags, numerically identical to COCO keypoint "v" values.
OUTSIDE = 0  # not in the picture / not labelled (COCO v=0)
OCCLUDED = 1  # labelled but hidden (COCO v=1)
VISIBLE = 2  # labelled and visible (COCO v=2)
VISIBILITY_NAMES = {VISIBLE: "visible", OCCLUDED: "occluded", OUTSIDE: "outside"}
VISIBILITY_CODES = {name: code for code, name in VISIBILITY_NAMES.items()}

# (group name, first index, last index inclusive, closed polygon?, RGB colour)
GROUPS: list[tuple[str, int, int, bool, tuple[int, int, int]]] = [
    ("jaw", 0, 16, False, (255, 200, 0)),
    ("right_brow", 17, 21, False, (255, 90, 90)),
    ("left_brow", 22, 26, False, (255, 90, 200)),
    ("nose_bridge", 27, 30, False, (80, 220, 255)),
    ("nose_base", 31, 35, False, (40, 140, 255)),
    ("right_eye", 36, 41, True, (90, 255, 90)),
    ("left_eye", 42, 47, True, (0, 190, 120)),
    ("outer_lips", 48, 59, True, (255, 60, 60)),
    ("inner_lips", 60, 67, True, (200, 0, 255)),
]



def _names() -> list[str]:
    names: list[str] = []
    for group, first, last, _closed, _colour in GROUPS:
        for k, _ in enumerate(range(first, last + 1)):
            names.append(f"{group}_{k + 1}")
    return names


POINT_NAMES: list[str] = _names()


def _edges() -> list[tuple[int, int]]:
    edges = []
    for _group, first, last, closed, _colour in GROUPS:
        edges.extend((i, i + 1) for i in range(first, last))
        if closed:
            edges.append((last, first))
    edges.append((30, 33))  # nose tip to nose base centre
    return edges


EDGES: list[tuple[int, int]] = _edges()


def colour_of(index: int) -> tuple[int, int, int]:
    for _group, first, last, _closed, colour in GROUPS:
        if first <= index <= last:
            return colour
    raise IndexError(f"landmark index {index} is outside 0..67")


def parse_point_ref(text: str) -> int:
    """'37', '#37' or a point name ('right_eye_2') -> 0-based index. Numbers are 0-based like iBUG/dlib part names."""
    text = str(text).strip().lstrip("#")
    if text.lstrip("-").isdigit():
        index = int(text)
    elif text in POINT_NAMES:
        index = POINT_NAMES.index(text)
    else:
        matches = [i for i, n in enumerate(POINT_NAMES) if n.startswith(text)]
        if len(matches) != 1:
            raise ValueError(f"unknown landmark {text!r}; use 0..67 or a name such as 'right_eye_1'")
        index = matches[0]
    if not 0 <= index < N_POINTS:
        raise ValueError(f"landmark index {index} is outside 0..67")
    return index


def point_label(index: int) -> str:
    return f"{index:02d} {POINT_NAMES[index]}"


# Mean 68-point shape (dlib dev set, Procrustes-aligned), unit outer-eye-corner distance, centred on its box.
# Used to place a new face by hand: template_face(box) scales it into a box.
MEAN_SHAPE = np.array([
    [-0.859, -0.494], [-0.854, -0.275], [-0.835, -0.062], [-0.794, 0.155], [-0.715, 0.357], [-0.585, 0.531],
    [-0.428, 0.683], [-0.256, 0.807], [-0.057, 0.843], [0.155, 0.813], [0.352, 0.697], [0.530, 0.555],
    [0.678, 0.385], [0.775, 0.181], [0.823, -0.042], [0.846, -0.271], [0.859, -0.505], [-0.717, -0.703],
    [-0.629, -0.801], [-0.496, -0.837], [-0.354, -0.827], [-0.219, -0.771], [0.083, -0.776], [0.229, -0.830],
    [0.380, -0.843], [0.523, -0.801], [0.627, -0.701], [-0.069, -0.585], [-0.075, -0.446], [-0.079, -0.310],
    [-0.081, -0.164], [-0.239, -0.070], [-0.161, -0.035], [-0.076, -0.007], [0.017, -0.035], [0.103, -0.065],
    [-0.551, -0.543], [-0.465, -0.589], [-0.366, -0.591], [-0.278, -0.538], [-0.366, -0.519], [-0.466, -0.520],
    [0.168, -0.536], [0.255, -0.592], [0.357, -0.591], [0.449, -0.543], [0.363, -0.521], [0.261, -0.523],
    [-0.395, 0.213], [-0.286, 0.142], [-0.159, 0.130], [-0.065, 0.139], [0.030, 0.119], [0.175, 0.148],
    [0.307, 0.207], [0.184, 0.349], [0.039, 0.405], [-0.062, 0.413], [-0.166, 0.404], [-0.291, 0.353],
    [-0.347, 0.219], [-0.160, 0.182], [-0.062, 0.193], [0.031, 0.183], [0.255, 0.216], [0.035, 0.304],
    [-0.065, 0.317], [-0.164, 0.305],
], dtype=np.float64)


def template_face(cx: float, cy: float, size: float) -> np.ndarray:
    """MEAN_SHAPE centred at (cx, cy) with its box ``size`` pixels wide."""
    return MEAN_SHAPE / (MEAN_SHAPE[:, 0].max() - MEAN_SHAPE[:, 0].min()) * size + np.array([cx, cy])
