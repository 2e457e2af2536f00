"""SQLite store for annotation projects: images, 68-point annotations with full history, tasks, users.

One file (``annotate.sqlite``) in a project folder; WAL journal; every write is one ``BEGIN IMMEDIATE`` transaction,
so a process killed mid-save leaves either the old or the new state, never a mix.

Concurrency is optimistic: each face annotation carries a ``revision``; ``save(..., base_revision=r)`` succeeds
only when the stored revision is still ``r`` and then stores ``r + 1``; otherwise it raises :class:`ConflictError`
carrying the stored version, so the UI can show who saved in between and offer a reload. Every save also appends a
history row; nothing is overwritten silently.

Modules: ``records`` (statuses, roles, errors, dataclasses, point validation), ``schema`` (the SQLite file), ``db``
(:class:`Store`: connections, projects, images, annotations), ``users`` (passwords, roles), ``workflow`` (statuses
and events), ``stats`` (progress, labeler statistics).
"""

from annotate.store.db import Store
from annotate.store.records import (
    DONE_STATUSES,
    LABELER_STATUSES,
    REVIEW_STATUSES,
    ROLES,
    STATUSES,
    Annotation,
    ConflictError,
    HistoryRow,
    ImageRecord,
    NotFound,
    PermissionDenied,
    Project,
    StoreError,
    ValidationError,
    normalize_visibility,
    validate_points,
)
from annotate.store.schema import DB_NAME, SCHEMA_VERSION, resolve_store_path
from annotate.store.users import hash_password

__all__ = [
    "DB_NAME", "DONE_STATUSES", "LABELER_STATUSES", "REVIEW_STATUSES", "ROLES", "SCHEMA_VERSION", "STATUSES",
    "Annotation", "ConflictError", "HistoryRow", "ImageRecord", "NotFound", "PermissionDenied", "Project", "Store",
    "StoreError", "ValidationError", "hash_password", "normalize_visibility", "resolve_store_path", "validate_points",
]
