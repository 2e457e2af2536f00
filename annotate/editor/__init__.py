"""Browser landmark editor: drag, zoom, pan, group move/scale, undo/redo, autosave to the annotation store.

:mod:`annotate.editor.bridge` (no Gradio) turns the annotator state into the page's value and applies the page's
edits; :mod:`annotate.editor.component` is the Gradio component (import it only where Gradio is installed).
"""

from annotate.editor.bridge import EditorBridge, OpError, parse_changes, skeleton_config

__all__ = ["EditorBridge", "OpError", "parse_changes", "skeleton_config"]
