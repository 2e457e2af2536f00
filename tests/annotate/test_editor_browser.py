"""The landmark editor in a real browser: `python -m annotate serve` + headless Chromium, real pointer gestures.

Checks what a labeler relies on, each against the SQLite store: a click selects and never moves a point; a drag
moves exactly by the pointer's displacement at any zoom and is saved; wheel and pinch zoom about the pointer; undo /
redo; whole-group move and scale; visibility; keyboard nudges (a burst is one save); touch drags; a conflicting save
by someone else is refused and can be reloaded. Skips without chromium + chromedriver (.ci/install_browser.sh).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from annotate_helpers import face_points, write_photo
from editor_browser import EditorPage, free_port, make_driver, serve, stop_app, wait_http

from annotate.formats import write_pts
from annotate.importer import import_folder
from annotate.skeleton import OCCLUDED, OUTSIDE, VISIBLE
from annotate.store import Store

pytestmark = pytest.mark.browser


def _stored(store: Store) -> tuple[np.ndarray, np.ndarray, int]:
    a = store.get_annotation(1)
    return a.points, a.visibility, a.revision


def _wait_revision(store: Store, revision: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while store.get_annotation(1).revision < revision:
        if time.monotonic() > deadline:
            raise AssertionError(f"revision {revision} never saved (at {store.get_annotation(1).revision})")
        time.sleep(0.02)


def test_editor_gestures_round_trip_to_the_store(browser_paths, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    folder = tmp_path / "photos"
    write_photo(folder / "face.png", 0, size=(400, 320))
    write_pts(folder / "face.pts", face_points(0, cx=200, cy=160, size=180))
    write_photo(folder / "second.ppm", 1, size=(300, 240))  # a .ppm (read by the app, so imported too)
    write_pts(folder / "second.pts", face_points(1, cx=150, cy=120, size=120))
    store = Store(tmp_path / "project", create=True)
    store.create_project("default")
    assert import_folder(store, folder, user="owner").ok and len(store.list_images()) == 2
    port = free_port()
    proc = serve(tmp_path / "project", port, tmp_path / "serve.log", "--open-access")
    driver = None
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, timeout=90)
        driver = make_driver(*browser_paths, tmp_path / "downloads")
        driver.get(f"http://127.0.0.1:{port}/")
        page = EditorPage(driver)
        page.wait_ready()
        pts0, _vis0, rev = _stored(store)
        np.testing.assert_allclose(page.js("e.points.map(p => [p[0], p[1]])"), pts0)

        # a click on the photo away from every point changes nothing; a click on a point only selects it
        rect = page.canvas_rect()
        page.click((rect["left"] + 15, rect["top"] + 15))
        page.click(page.client_of(8))
        assert page.js("e.primary") == 8 and page.js("Array.from(e.sel)") == [8]
        page.click((rect["left"] + 20, rect["top"] + rect["height"] - 20))  # the old UI moved the point here
        time.sleep(0.3)
        np.testing.assert_array_equal(_stored(store)[0], pts0)
        assert _stored(store)[2] == rev and page.js("e.timings.length") == 0

        # a drag moves the point by exactly the pointer displacement and is saved
        zoom = page.js("e.view.zoom")
        start = page.client_of(36)
        grab = np.array(start) - np.array([rect["left"], rect["top"]]) - page.canvas_xy(page.offset_of(start))
        page.drag(start, 15, 6)
        page.wait_saved()
        _wait_revision(store, rev + 1)
        pts, _, rev = _stored(store)
        np.testing.assert_allclose(pts[36], pts0[36] + np.array([15, 6]) / zoom, atol=1e-6)
        np.testing.assert_array_equal(np.delete(pts, 36, 0), np.delete(pts0, 36, 0))
        assert abs(grab).max() <= 0.5 + 1e-9  # the button went down on the point's pixel
        t = page.js("e.timings[0]")
        assert t["ok"] and t["kind"] == "drag" and t["t_saved"] >= t["t_applied"] >= t["t_input"]

        # wheel zoom keeps the photo point under the pointer in place
        ox, oy = page.offset_of((rect["left"] + 200.0, rect["top"] + 150.0))
        sx, sy = page.canvas_xy((ox, oy))  # where the wheel event happens, canvas px
        before = page.js("e.toWorld(arguments[0], arguments[1])", sx, sy)
        ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(page.canvas, ox, oy), 0, -300).perform()
        time.sleep(0.2)
        assert page.js("e.view.zoom") > zoom * 1.3
        np.testing.assert_allclose(page.js("e.toWorld(arguments[0], arguments[1])", sx, sy), before, atol=1e-6)

        # 4x zoom (key 4, centred on the selection), drag, then undo (z) and redo (y) through the store
        page.click(page.client_of(30))
        page.key("4")
        assert page.js("e.view.zoom") == 4
        start30 = pts[30].copy()
        page.drag(page.client_of(30), 7, -5)
        page.wait_saved()
        _wait_revision(store, rev + 1)
        np.testing.assert_allclose(_stored(store)[0][30], start30 + np.array([7, -5]) / 4, atol=1e-6)
        page.key("z")
        page.wait_saved()
        _wait_revision(store, rev + 2)
        np.testing.assert_allclose(_stored(store)[0][30], start30, atol=1e-9)
        page.key("y")
        page.wait_saved()
        _wait_revision(store, rev + 3)
        np.testing.assert_allclose(_stored(store)[0][30], start30 + np.array([7, -5]) / 4, atol=1e-6)
        pts, _, rev = _stored(store)

        # the whole left eye: double-click selects the group, a drag moves all six points, ] scales them
        page.key("0")  # fit the face again
        zoom = page.js("e.view.zoom")
        ActionChains(driver).double_click(page.canvas).perform()  # on the photo centre: selects nothing
        ox, oy = page.offset_of(page.client_of(42))
        ActionChains(driver, duration=20).move_to_element_with_offset(page.canvas, ox, oy).double_click().perform()
        assert sorted(page.js("Array.from(e.sel)")) == list(range(42, 48))
        page.drag(page.client_of(44), 8, 0)
        page.wait_saved()
        _wait_revision(store, rev + 1)
        moved, _, rev = _stored(store)
        np.testing.assert_allclose(moved[42:48], pts[42:48] + np.array([8 / zoom, 0]), atol=1e-6)
        np.testing.assert_array_equal(np.delete(moved, range(42, 48), 0), np.delete(pts, range(42, 48), 0))
        page.key("]")
        page.wait_saved()
        _wait_revision(store, rev + 1)
        scaled, _, rev = _stored(store)
        centre = (moved[42:48].min(0) + moved[42:48].max(0)) / 2
        np.testing.assert_allclose(scaled[42:48] - centre, (moved[42:48] - centre) * 1.02, atol=1e-6)

        # visibility cycle with v, saved each time
        page.click(page.client_of(0))
        for expected in (OCCLUDED, OUTSIDE, VISIBLE):
            page.key("v")
            page.wait_saved()
            _wait_revision(store, rev + 1)
            _, vis, rev = _stored(store)
            assert vis[0] == expected
        # an outside point is hidden and cannot be grabbed; its position is kept for when it comes back
        assert _stored(store)[0][0][0] == scaled[0][0]

        # a burst of arrow-key nudges is one save (one revision, one undo step)
        page.click(page.client_of(5))
        zoom = page.js("e.view.zoom")
        x5 = _stored(store)[0][5].copy()
        page.key(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_UP)
        page.wait_saved()
        _wait_revision(store, rev + 1)
        time.sleep(0.7)
        pts, _, rev2 = _stored(store)
        assert rev2 == rev + 1
        np.testing.assert_allclose(pts[5], x5 + np.array([3, -1]) / zoom, atol=1e-6)
        rev = rev2

        # touch: a finger drag moves a point, a pinch zooms
        x10 = pts[10].copy()
        page.touch_drag(page.client_of(10), 12, 12)
        page.wait_saved()
        _wait_revision(store, rev + 1)
        pts, _, rev = _stored(store)
        np.testing.assert_allclose(pts[10], x10 + np.array([12, 12]) / zoom, atol=1e-6)
        page.pinch((rect["left"] + 150.0, rect["top"] + 150.0), 60, 180)
        assert page.js("e.view.zoom") == pytest.approx(3 * zoom, rel=0.05)

        # someone else saves meanwhile: the next drag is refused (nothing lost), Reload shows their version
        other = pts.copy()
        other[20] += 3.0
        store.save(1, other, _stored(store)[1], base_revision=rev, user="bob")
        page.key("0")
        page.drag(page.client_of(21), 5, 5)
        page.wait_saved()
        assert page.js("e.conflict") and "bob" in page.js("e.bannerText.textContent")
        np.testing.assert_array_equal(_stored(store)[0], other)
        driver.find_element("css selector", "#ann-editor .lmk-banner button").click()
        page.wait_saved()
        np.testing.assert_allclose(page.js("e.points.map(p => [p[0], p[1]])"), other)
        assert not page.js("e.conflict")
        assert page.js("e.timings.every(t => t.t_saved !== null)")

        # Done with a note: saved on this image, the next image opens in the editor, the note box is empty again
        first = page.js("e.doc.image_id")
        driver.find_element("css selector", "#ann-note textarea").send_keys("check the jaw")
        driver.find_element("css selector", "#ann-done").click()
        deadline = time.monotonic() + 20
        while page.js("e.doc.image_id") == first or not page.js("!!e.image"):
            assert time.monotonic() < deadline, "the next image did not open"
            time.sleep(0.1)
        assert store.get_image(first).status == "done" and store.get_image(first).comment == "check the jaw"
        assert page.js("e.doc.width") == 300 and page.js("e.lastSeq") > 0
        time.sleep(0.3)
        assert driver.find_element("css selector", "#ann-note textarea").get_attribute("value") == ""
        page.drag(page.client_of(33), 6, 0)  # edits now go to the second photo
        page.wait_saved()
        second = page.js("e.doc.image_id")
        assert store.get_annotation(second).revision == 2 and store.get_annotation(second).updated_by is None
        driver.save_screenshot(str(tmp_path / "editor.png"))
    finally:
        if driver is not None:
            driver.quit()
        stop_app(proc)
        shutil.rmtree(tmp_path / "project", ignore_errors=True)
