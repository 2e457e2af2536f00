"""Rebuild msma/data/ict_face_compact.npz from the full ICT-FaceKit light model file.

    python scripts/build_face_model.py ../shared/assets/ict_face_model.npz
"""

from __future__ import annotations

import argparse

from msma.assets import BUNDLED_FACE_MODEL, build_compact_ict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="ict_face_model.npz (full ICT-FaceKit light model)")
    parser.add_argument("-o", "--output", default=str(BUNDLED_FACE_MODEL))
    args = parser.parse_args()
    print(build_compact_ict(args.source, args.output))


if __name__ == "__main__":
    main()
