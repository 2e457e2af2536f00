"""Drive the landmark editor of ``python -m annotate serve`` in headless Chromium (used by the browser test and by
benchmarks/editor_drag.py). Gestures are real W3C pointer actions (selenium ActionChains / ActionBuilder): the page
sees pointerdown / pointermove / pointerup exactly as from a mouse or a finger."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from test_app_browser import find_browser, free_port, make_driver, stop_app, wait_http  # noqa: E402

ED = "document.querySelector('#ann-editor .lmk-root').__editor"

__all__ = ["ED", "EditorPage", "find_browser", "free_port", "make_driver", "serve", "stop_app", "wait_http"]


def serve(project_dir: Path, port: int, log_path: Path, *extra: str) -> subprocess.Popen:
    """``python -m annotate serve -d PROJECT --port PORT`` on 127.0.0.1 (own process group, stopped by stop_app)."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "annotate", "serve", "-d", str(project_dir), "--port", str(port),
                             *extra], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


class EditorPage:
    """The editor on a loaded page: its state through the page script, gestures through selenium."""

    def __init__(self, driver):
        self.d = driver

    def js(self, expr: str, *args):
        return self.d.execute_script(f"const e = {ED}; return {expr};", *args)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.d.execute_script("const r = document.querySelector('#ann-editor .lmk-root');"
                                     "return !!(r && r.__editor && r.__editor.image && r.__editor.cssSize);"):
                return
            time.sleep(0.2)
        raise TimeoutError("the landmark editor did not show a photo")

    def wait_saved(self, timeout: float = 10.0) -> None:
        """Until every op sent has been answered by the server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js("e.idle() && e.lastAck >= e.nextId - 1"):
                return
            time.sleep(0.02)
        raise TimeoutError("edits not acknowledged")

    @property
    def canvas(self):
        return self.d.find_element("css selector", "#ann-editor canvas")

    def canvas_rect(self) -> dict:
        return self.d.execute_script("return arguments[0].getBoundingClientRect().toJSON()", self.canvas)

    def client_of(self, index: int) -> tuple[float, float]:
        x, y = self.js("e.clientOf(arguments[0])", index)
        return float(x), float(y)

    def origin(self) -> tuple[int, int]:
        """The canvas's in-view centre point, WebDriver's origin for element-relative moves (floored, per W3C)."""
        r = self.canvas_rect()
        return math.floor(r["left"] + r["width"] / 2), math.floor(r["top"] + r["height"] / 2)

    def offset_of(self, client: tuple[float, float]) -> tuple[int, int]:
        """Integer offset from the origin nearest to a client point."""
        cx, cy = self.origin()
        return round(client[0] - cx), round(client[1] - cy)

    def canvas_xy(self, offset: tuple[int, int]) -> tuple[float, float]:
        """Canvas CSS coordinates where the pointer is at this offset from the origin."""
        r = self.canvas_rect()
        cx, cy = self.origin()
        return cx + offset[0] - r["left"], cy + offset[1] - r["top"]

    def drag(self, start: tuple[float, float], dx: int, dy: int, steps: int = 4) -> tuple[int, int]:
        """Mouse drag from the client point ``start`` (rounded to a pixel) by (dx, dy) CSS px; returns the offset
        (from the canvas centre) where the button went down."""
        from selenium.webdriver.common.action_chains import ActionChains

        ox, oy = self.offset_of(start)
        chain = ActionChains(self.d, duration=20).move_to_element_with_offset(self.canvas, ox, oy).click_and_hold()
        done_x = done_y = 0
        for k in range(1, steps + 1):
            tx, ty = round(dx * k / steps), round(dy * k / steps)
            chain.move_by_offset(tx - done_x, ty - done_y)
            done_x, done_y = tx, ty
        chain.release().perform()
        return ox, oy

    def click(self, client: tuple[float, float], shift: bool = False) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ox, oy = self.offset_of(client)
        chain = ActionChains(self.d, duration=20)
        if shift:
            chain.key_down(Keys.SHIFT)
        chain.move_to_element_with_offset(self.canvas, ox, oy).click()
        if shift:
            chain.key_up(Keys.SHIFT)
        chain.perform()

    def touch_drag(self, start: tuple[float, float], dx: int, dy: int) -> None:
        from selenium.webdriver.common.actions.action_builder import ActionBuilder
        from selenium.webdriver.common.actions.interaction import POINTER_TOUCH
        from selenium.webdriver.common.actions.pointer_input import PointerInput

        ox, oy = self.offset_of(start)
        builder = ActionBuilder(self.d, mouse=PointerInput(POINTER_TOUCH, "finger"), duration=20)
        p = builder.pointer_action
        p.move_to(self.canvas, ox, oy).pointer_down()
        for k in range(1, 5):
            p.move_to(self.canvas, ox + round(dx * k / 4), oy + round(dy * k / 4))
        p.pointer_up()
        builder.perform()

    def pinch(self, centre: tuple[float, float], spread0: int, spread1: int) -> None:
        """Two fingers, horizontally ``spread0`` px apart around ``centre``, moving to ``spread1`` apart."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder
        from selenium.webdriver.common.actions.interaction import POINTER_TOUCH
        from selenium.webdriver.common.actions.pointer_actions import PointerActions
        from selenium.webdriver.common.actions.pointer_input import PointerInput

        ox, oy = self.offset_of(centre)
        builder = ActionBuilder(self.d, mouse=PointerInput(POINTER_TOUCH, "f1"), duration=50)
        f2 = PointerActions(builder.add_pointer_input(POINTER_TOUCH, "f2"), duration=50)
        f1 = builder.pointer_action
        f1.move_to(self.canvas, ox - spread0 // 2, oy).pointer_down()
        f2.move_to(self.canvas, ox + spread0 // 2, oy).pointer_down()
        for k in range(1, 5):
            s = spread0 + (spread1 - spread0) * k // 4
            f1.move_to(self.canvas, ox - s // 2, oy)
            f2.move_to(self.canvas, ox + s // 2, oy)
        f1.pointer_up()
        f2.pointer_up()
        builder.perform()

    def key(self, *keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.d).send_keys(*keys).perform()

