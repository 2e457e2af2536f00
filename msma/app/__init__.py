"""The logic behind ``app.py``: plain functions on numpy / library objects, no Gradio import.

``app.py`` only wires these into components (``from msma import app as H``). One module a job:

| module | job |
|---|---|
| ``state.py`` | models loaded once (`AppModels`), the ZeroGPU switch, per-visitor `Session` and its files |
| ``startup.py`` | serve the page at once, load the models behind it (:class:`BackgroundModels`) |
| ``inputs.py`` | the one gate for client uploads (:func:`client_upload`), photo loading, face detection |
| ``reconstruct.py`` | the Reconstruct tab: preview, details, face picker, expression / identity sliders |
| ``compare.py`` | the Compare tab: two methods on one photo, two photos' identities |
| ``video.py`` | the Video tab: clip -> tracking -> exports and curves, live webcam weights (`build_video_tab`) |
| ``plots.py`` | the Reconstruct tab's pictures: face crops, blendshape chart, pose table |

The Annotate and Review tabs are ``annotate/ui.py``; the shaded mesh renders are ``msma/shading.py``.
"""

from msma.app.compare import IdentityComparison, MethodComparison, compare_identities, compare_methods
from msma.app.inputs import (
    UPLOAD_REFUSED,
    Photo,
    Upload,
    client_upload,
    detect,
    example_photos,
    file_stem,
    gradio_upload_folder,
    load_photo,
)
from msma.app.plots import blendshape_figure, face_gallery, pose_markdown
from msma.app.reconstruct import (
    IDENTITY_RANGE,
    KEY_EXPRESSIONS,
    N_IDENTITY_SLIDERS,
    RECONSTRUCT_DOWNLOADS,
    Details,
    Edited,
    Preview,
    details,
    download_stem,
    expression_slider_values,
    reconstruct,
    reconstruction_downloads,
    repose,
    select_face,
    slider_values,
)
from msma.app.state import (
    ABLATION_WEIGHTS_ENV,
    ABLATION_WEIGHTS_NAME,
    APP_MAX_SIDE,
    EXAMPLES_DIR,
    MAX_FACES,
    METHOD_LABELS,
    OUTPUT_MAX_AGE_S,
    OUTPUT_ROOT,
    PREVIEW_TEXTURE_FORMAT,
    AppError,
    AppModels,
    Engine,
    Options,
    Session,
    gpu_decorator,
    new_workdir,
    prune_outputs,
    run_engine,
)

__all__ = [
    "ABLATION_WEIGHTS_ENV", "ABLATION_WEIGHTS_NAME", "APP_MAX_SIDE", "EXAMPLES_DIR", "IDENTITY_RANGE",
    "KEY_EXPRESSIONS", "MAX_FACES", "METHOD_LABELS", "N_IDENTITY_SLIDERS", "OUTPUT_MAX_AGE_S", "OUTPUT_ROOT",
    "PREVIEW_TEXTURE_FORMAT", "RECONSTRUCT_DOWNLOADS", "UPLOAD_REFUSED", "AppError", "AppModels", "Details", "Edited",
    "Engine", "IdentityComparison", "MethodComparison", "Options", "Photo", "Preview", "Session", "Upload",
    "blendshape_figure", "client_upload", "compare_identities", "compare_methods", "details", "detect",
    "download_stem", "example_photos", "expression_slider_values", "face_gallery", "file_stem", "gpu_decorator",
    "gradio_upload_folder", "load_photo", "new_workdir", "pose_markdown", "prune_outputs", "reconstruct",
    "reconstruction_downloads", "repose", "run_engine", "select_face", "slider_values",
]
