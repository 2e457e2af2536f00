"""The annotation store's SQLite file: its name, schema and version."""

from __future__ import annotations

import os
from pathlib import Path

DB_NAME = "annotate.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, created_by TEXT);
CREATE TABLE IF NOT EXISTS images(
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL,
    split TEXT NOT NULL DEFAULT 'train',
    status TEXT NOT NULL DEFAULT 'todo'
        CHECK(status IN ('todo','in_progress','done','needs_review','approved','rejected')),
    status_by TEXT, status_at REAL, comment TEXT, assignee TEXT,
    confidence REAL, added_at REAL NOT NULL, added_by TEXT,
    UNIQUE(project_id, sha256));
CREATE INDEX IF NOT EXISTS images_queue ON images(project_id, status, confidence);
CREATE TABLE IF NOT EXISTS annotations(
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    face INTEGER NOT NULL, revision INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL, source TEXT NOT NULL, confidence REAL,
    updated_by TEXT, updated_at REAL NOT NULL,
    UNIQUE(image_id, face));
CREATE TABLE IF NOT EXISTS history(
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    face INTEGER NOT NULL, revision INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL, source TEXT NOT NULL, confidence REAL,
    user TEXT, created_at REAL NOT NULL,
    UNIQUE(image_id, face, revision));
CREATE INDEX IF NOT EXISTS history_user ON history(user);
CREATE TABLE IF NOT EXISTS task_events(
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    old_status TEXT, status TEXT NOT NULL, comment TEXT, user TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK(role IN ('labeler','reviewer','admin')),
    algo TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL, created_at REAL NOT NULL);
"""


def resolve_store_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix in (".sqlite", ".db", ".sqlite3"):
        return p
    return p / DB_NAME
