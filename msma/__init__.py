"""MSMA: one photo of a face in, an animatable 3D face out.

    from msma import Reconstructor
    result = Reconstructor()("photo.jpg")
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Reconstructor", "ReconstructionResult", "FaceReconstruction", "NoFaceError"]


def __getattr__(name: str):
    # Lazy so that `import msma.landmarks` does not pull torch networks and the renderer.
    if name in ("Reconstructor", "ReconstructionResult", "FaceReconstruction"):
        from msma import api

        return getattr(api, name)
    if name == "NoFaceError":
        from msma.landmarks import NoFaceError

        return NoFaceError
    raise AttributeError(f"module 'msma' has no attribute {name!r}")
