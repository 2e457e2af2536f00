from __future__ import annotations

from pathlib import Path

import pytest
from annotate_helpers import face_points, write_photo

from annotate.formats import write_pts
from annotate.store import Store


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """4 photos; the first two with .pts labels."""
    folder = tmp_path / "photos"
    for i in range(4):
        write_photo(folder / f"img{i}.png", i)
    for i in range(2):
        write_pts(folder / f"img{i}.pts", face_points(i))
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "project", create=True)
    s.create_project("default")
    return s


@pytest.fixture
def filled_store(store: Store, photo_folder: Path) -> Store:
    from annotate.importer import import_folder

    report = import_folder(store, photo_folder, user="owner")
    assert report.ok, report.summary()
    return store
