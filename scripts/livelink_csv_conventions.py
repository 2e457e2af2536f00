"""Units and signs of the rotation columns of Live Link Face CSV recordings (what msma.track_export matches).

    python scripts/livelink_csv_conventions.py TAKE.csv [TAKE2.csv ...]

For each recording (a CSV written by Epic's Live Link Face app): the range of the 9 rotation columns, and how the
eye yaw / pitch columns follow the app's own eyeLook* blendshapes, which name the direction unambiguously
(EyeLookDown = looking down; EyeLookIn = towards the nose, i.e. the subject's right for the left eye):

* pitch vs (EyeLookDown - EyeLookUp): positive correlation = pitch > 0 looks down;
* LeftEyeYaw vs (EyeLookIn - EyeLookOut) and RightEyeYaw vs (EyeLookOut - EyeLookIn): positive = yaw > 0 looks
  towards the subject's right;
* the slope (column units per unit of blendshape weight): ~0.6 per full eyeLook means radians (35 degrees), not
  degrees and not a -1..1 scale.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll")


def read(path: str) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    return {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(header) if i >= 2}


def report(path: str) -> None:
    d = read(path)
    print(f"{path}: {len(d['HeadYaw'])} frames")
    for name in ROTATIONS:
        print(f"  {name:14s} min {d[name].min():+.3f}  max {d[name].max():+.3f}  std {d[name].std():.3f}")
    for side in ("Left", "Right"):
        down = d[f"EyeLookDown{side}"] - d[f"EyeLookUp{side}"]
        towards_right = d[f"EyeLookIn{side}"] - d[f"EyeLookOut{side}"]
        if side == "Right":
            towards_right = -towards_right
        for label, column, driver in ((f"{side}EyePitch vs down-up", f"{side}EyePitch", down),
                                      (f"{side}EyeYaw vs towards-right", f"{side}EyeYaw", towards_right)):
            r = np.corrcoef(d[column], driver)[0, 1]
            slope = np.polyfit(driver, d[column], 1)[0]
            print(f"  {label:30s} r = {r:+.3f}  slope {slope:+.3f} per unit weight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", help="Live Link Face CSV recordings")
    for path in parser.parse_args().csv:
        report(path)


if __name__ == "__main__":
    main()
