"""MSMA landmark annotation toolkit: store, import / pre-label, browser labeling and review, export, quality.

Stand-alone: ``python -m annotate init|import|prelabel|export|serve|users|report|status``; inside ``app.py``:
``annotate.ui.build_annotation_tabs(store_path)`` within a ``gr.Blocks`` context. Heavy modules import lazily.
"""

from annotate.store import ConflictError, PermissionDenied, Store, ValidationError

__all__ = ["ConflictError", "PermissionDenied", "Store", "ValidationError"]
