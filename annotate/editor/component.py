"""``LandmarkEditor``: the browser landmark editor as a Gradio component (a ``gr.HTML`` with its own script).

The script and style in ``static/`` are inlined into the page head (no network access, no build step); the value is
the dict made by :meth:`annotate.editor.bridge.EditorBridge.value`, and every edit reaches Python through the server
function ``lmk_apply`` (pass ``server_functions=[lmk_apply]``; see :mod:`annotate.editor.bridge`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from annotate.editor.bridge import skeleton_config

STATIC = Path(__file__).with_name("static")


def editor_script() -> str:
    return (STATIC / "landmark_editor.js").read_text(encoding="utf-8")


def editor_style() -> str:
    return (STATIC / "landmark_editor.css").read_text(encoding="utf-8")


def LandmarkEditor(value: Any = None, *, canvas_height: int = 620, elem_id: str | None = "ann-editor",  # noqa: N802
                   **kwargs: Any) -> gr.HTML:
    """Drag / zoom / pan landmark editor (a configured ``gr.HTML``; not a subclass, which would make Gradio write a
    ``.pyi`` stub next to this file). ``server_functions=[lmk_apply]``: ``lmk_apply(op) -> value`` applies one edit
    (``EditorBridge.handle``)."""
    return gr.HTML(
        value=value,
        html_template='<div class="lmk-root"></div>',
        js_on_load="window.MSMALandmarkEditor.mount(element, props, watch, server);",
        head=f"<style>{editor_style()}</style><script>{editor_script()}</script>",
        apply_default_css=False,
        elem_id=elem_id,
        skeleton=skeleton_config(),
        canvas_height=int(canvas_height),
        **kwargs,
    )
