from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from annotate.skeleton import OCCLUDED, OUTSIDE, VISIBLE
from annotate.store import ConflictError, PermissionDenied, Store, ValidationError

REPO = Path(__file__).resolve().parents[2]


def first_image(store: Store):
    return store.list_images(order="id")[0]


def test_save_keeps_full_history(filled_store: Store) -> None:
    img = first_image(filled_store)
    ann = filled_store.get_annotation(img.id, 0)
    assert ann.revision == 1 and ann.updated_by == "owner" and ann.source == "import"
    pts = ann.points.copy()
    for k in range(3):
        pts[30] += 1
        ann = filled_store.save(img.id, pts, ann.visibility, base_revision=ann.revision, user=f"u{k}")
    assert ann.revision == 4
    hist = filled_store.history(img.id, 0)
    assert [h.revision for h in hist] == [1, 2, 3, 4]
    assert [h.user for h in hist] == ["owner", "u0", "u1", "u2"]
    assert hist[1].points[30, 0] + 2 == hist[3].points[30, 0]  # older versions are intact
    assert filled_store.get_image(img.id).status == "in_progress"  # first manual save starts the task


def test_conflict_between_two_connections(filled_store: Store) -> None:
    img = first_image(filled_store)
    other = Store(filled_store.db_path)  # a second labeler's process / connection
    a = filled_store.get_annotation(img.id)
    b = other.get_annotation(img.id)
    pa, pb = a.points.copy(), b.points.copy()
    pa[0] += 3
    pb[0] -= 3
    filled_store.save(img.id, pa, a.visibility, base_revision=a.revision, user="alice")
    with pytest.raises(ConflictError) as exc:
        other.save(img.id, pb, b.visibility, base_revision=b.revision, user="bob")
    assert "alice" in str(exc.value) and exc.value.current.revision == 2
    stored = other.get_annotation(img.id)
    assert np.array_equal(stored.points, pa)  # alice's update not lost
    # bob reloads and saves on top
    other.save(img.id, pb, b.visibility, base_revision=stored.revision, user="bob")
    assert other.get_annotation(img.id).revision == 3


def test_concurrent_saves_from_threads_one_wins(filled_store: Store) -> None:
    img = first_image(filled_store)
    base = filled_store.get_annotation(img.id)
    results: list[str] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        s = Store(filled_store.db_path)
        pts = base.points.copy()
        pts[5] += k + 1
        barrier.wait()
        try:
            s.save(img.id, pts, base.visibility, base_revision=base.revision, user=f"w{k}")
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
    assert filled_store.get_annotation(img.id).revision == base.revision + 1
    assert len(filled_store.history(img.id, 0)) == base.revision + 1


_KILL_SCRIPT = r"""
import sys, time
from pathlib import Path
from annotate.store import Store
s = Store(sys.argv[1])
img = s.list_images(order="id")[0]
ann = s.get_annotation(img.id)
def hang():
    Path(sys.argv[2]).write_text("in transaction")
    time.sleep(60)
s._fault_hook = hang
pts = ann.points.copy(); pts[0] += 5
s.save(img.id, pts, ann.visibility, base_revision=ann.revision, user="doomed")
"""


def test_killed_mid_save_leaves_database_consistent(filled_store: Store, tmp_path: Path) -> None:
    img = first_image(filled_store)
    before = filled_store.get_annotation(img.id)
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(filled_store.db_path), str(marker)], env=env)
    try:
        deadline = time.time() + 30
        while not marker.exists():
            assert proc.poll() is None and time.time() < deadline, "child never reached the transaction"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # history row written, annotation row not yet: mid-transaction
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    fresh = Store(filled_store.db_path)
    assert fresh.integrity_check() == "ok"
    after = fresh.get_annotation(img.id)
    assert after.revision == before.revision and np.array_equal(after.points, before.points)
    assert [h.revision for h in fresh.history(img.id, 0)] == [before.revision]  # no partial history row
    assert all(h.user != "doomed" for h in fresh.history(img.id))
    # and the database is writable again (no stale lock)
    fresh.save(img.id, before.points, before.visibility, base_revision=before.revision, user="next")


def test_points_outside_image_rejected_unless_flagged(filled_store: Store) -> None:
    img = first_image(filled_store)
    ann = filled_store.get_annotation(img.id)
    pts = ann.points.copy()
    pts[8] = (img.width + 20, 10)
    with pytest.raises(ValidationError, match="point 8 .* outside"):
        filled_store.save(img.id, pts, ann.visibility, base_revision=ann.revision, user="a")
    vis = ann.visibility.copy()
    vis[8] = OUTSIDE
    vis[9] = OCCLUDED
    saved = filled_store.save(img.id, pts, vis, base_revision=ann.revision, user="a")
    assert saved.visibility[8] == OUTSIDE and saved.visibility[9] == OCCLUDED and saved.visibility[0] == VISIBLE
    with pytest.raises(ValidationError):
        filled_store.save(img.id, pts[:60], None, base_revision=saved.revision, user="a")
    with pytest.raises(ValidationError):
        filled_store.save(img.id, pts, [5] * 68, base_revision=saved.revision, user="a")


def test_roles_and_auth(filled_store: Store) -> None:
    s = filled_store
    img = first_image(s)
    assert not s.auth_enabled  # no users: open
    s.add_user("lab", "secret12", "labeler")
    s.add_user("rev", "secret12", "reviewer")
    assert s.auth_enabled
    assert s.authenticate("lab", "secret12") and not s.authenticate("lab", "wrong") and not s.authenticate("x", "y")
    salts = s._conn().execute("SELECT salt, hash FROM users").fetchall()
    assert salts[0]["hash"] != salts[1]["hash"]  # salted: same password, different hashes
    ann = s.get_annotation(img.id)
    with pytest.raises(PermissionDenied, match="log in"):
        s.save(img.id, ann.points, ann.visibility, base_revision=ann.revision, user=None)
    with pytest.raises(PermissionDenied):
        s.save(img.id, ann.points, ann.visibility, base_revision=ann.revision, user="intruder")
    ann = s.save(img.id, ann.points, ann.visibility, base_revision=ann.revision, user="lab")
    s.set_status(img.id, "done", user="lab")
    with pytest.raises(PermissionDenied):
        s.set_status(img.id, "approved", user="lab")
    with pytest.raises(ValidationError, match="comment"):
        s.set_status(img.id, "rejected", user="rev")
    s.set_status(img.id, "rejected", user="rev", comment="jaw too low")
    assert s.get_image(img.id).comment == "jaw too low"
    s.set_status(img.id, "approved", user="rev")
    with pytest.raises(PermissionDenied, match="approved"):
        s.save(img.id, ann.points, ann.visibility, base_revision=ann.revision, user="lab")
    with pytest.raises(PermissionDenied):
        s.set_status(img.id, "in_progress", user="lab")
    assert [e["status"] for e in s.task_events(img.id)] == ["in_progress", "done", "rejected", "approved"]
    cli = Store(s.db_path, enforce_roles=False)
    cli.set_status(img.id, "todo", user=None)  # the local owner's CLI is trusted


def test_progress_and_labeler_counts(filled_store: Store) -> None:
    s = filled_store
    imgs = s.list_images(order="id")
    for img in imgs[:2]:
        ann = s.get_annotation(img.id)
        s.save(img.id, ann.points, ann.visibility, base_revision=ann.revision, user="alice")
        s.set_status(img.id, "done", user="alice")
    s.set_status(imgs[0].id, "approved", user="rev")
    p = s.progress()
    assert p["total"] == 4 and p["finished"] == 2 and p["approved"] == 1 and p["done"] == 1 and p["todo"] == 2
    stats = s.labeler_stats()
    assert stats["alice"]["saves"] == 2 and stats["alice"]["done"] == 2 and stats["alice"]["approved"] == 1
