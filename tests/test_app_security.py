"""Attacks on the launched Gradio app (127.0.0.1, real HTTP, the browser's protocol and the REST API).

Every endpoint that takes an image is sent server paths it never uploaded, in every payload shape a client can
send (with and without Gradio's ``meta``, bare strings, URL fields, ``..`` and symlinks): an audit hook records
every ``open()`` of the target files in this process, and the face detector (the first step after a photo is
decoded) is replaced by a recorder. The models are stand-ins: the point is what is read, not the 3D face.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_http import API, GradioHTTP, free_port
from PIL import Image
from security_counts import record

from msma import app as H

REPO = Path(__file__).resolve().parents[1]
META = {"_type": "gradio.FileData"}

_WATCH: set[str] = set()
_OPENED: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and args and isinstance(args[0], (str, bytes)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path in _WATCH:
            _OPENED.append(path)


sys.addaudithook(_audit)  # cannot be removed; inert while _WATCH is empty


class _FakeReconstructor:
    detector = "none"

    def describe(self) -> dict[str, str]:
        return {"face_model": "stand-in", "device": "cpu"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    import msma.landmarks

    detected: list[tuple] = []
    patch = pytest.MonkeyPatch()
    patch.setattr(msma.landmarks, "detect_faces", lambda image, **kw: detected.append(image.shape) or [])
    models = H.AppModels({"fitting": H.Engine("fitting", "fitting", _FakeReconstructor(), "fitting")}, "fitting")
    port = free_port()
    args = app.parse_args(["--host", "127.0.0.1", "--port", str(port), "--no-warmup",
                           "--annotate-dir", str(tmp_path_factory.mktemp("no_store") / "none")])
    demo = app.build_demo(models, args)
    app.serve(demo, args, {}, prevent_thread_lock=True, quiet=True)
    client = GradioHTTP(f"http://127.0.0.1:{port}")
    try:
        yield SimpleNamespace(client=client, demo=demo, detected=detected, config=client.config())
    finally:
        client.close()
        demo.close()
        patch.undo()


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """Files an attacker wants: a photo, a text file, a folder, a missing file (names of one length, so that
    answers can be compared), plus ways of reaching them."""
    root = tmp_path_factory.mktemp("server_private")
    photo = root / "private_photo.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(photo)
    text = root / "private_text0.png"
    text.write_text("secret")
    folder = root / "private_fold0.png"
    folder.mkdir()
    upload_root = H.gradio_upload_folder()
    link_dir = upload_root / f"attack_{os.getpid()}"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "innocent.png"
    if not link.exists():
        link.symlink_to(photo)
    paths = {
        "photo": str(photo), "text": str(text), "folder": str(folder), "missing": str(root / "private_gone0.png"),
        "etc_passwd": "/etc/passwd", "repo_file": str(REPO / "examples" / "01_portrait.jpg"),
        "dotdot": str(upload_root) + "/../" + os.path.relpath(photo, upload_root.parent),
        "symlink_in_uploads": str(link), "relative": os.path.relpath(photo),
    }
    watch = {str(photo), str(text), "/etc/passwd", str(link), str(REPO / "examples" / "01_portrait.jpg")}
    yield SimpleNamespace(paths=paths, watch={os.path.abspath(p) for p in watch})
    link.unlink(missing_ok=True)
    link_dir.rmdir()


SHAPES = {
    "payload": lambda p: {"path": p},
    "payload+meta": lambda p: {"path": p, "meta": META},
    "payload+meta+name": lambda p: {"path": p, "orig_name": "holiday.jpg", "meta": META},
    "bare string": lambda p: p,
    "url field": lambda p: {"path": p, "url": f"{API}/file={p}", "meta": META},
}


def _file_inputs(config: dict) -> list[tuple[dict, list[int]]]:
    """Every event (dependency) that takes a file-like component, with the positions of those inputs."""
    types = {c["id"]: c["type"] for c in config["components"]}
    out = []
    for dep in config["dependencies"]:
        slots = [i for i, cid in enumerate(dep["inputs"]) if types[cid] in ("image", "file", "video", "audio",
                                                                              "model3d", "gallery", "imageslider")]
        if slots:
            out.append((dep, slots))
    return out


def _defaults(config: dict, dep: dict) -> list:
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    return [values[cid] for cid in dep["inputs"]]


def _masked(message, path: str) -> str:
    """The answer with the requested path's own characters removed (Gradio echoes, and may shorten, the path)."""
    text = str(message).replace(path, "<PATH>").replace(os.path.abspath(path), "<PATH>")
    return re.sub(r"private_[a-z0-9]{5}\.png", "<NAME>", text)


def test_only_documented_endpoints_take_files(server) -> None:
    file_deps = _file_inputs(server.config)
    public = {d["api_name"] for d in server.config["dependencies"] if d.get("api_visibility") == "public"}
    assert public == {"reconstruct", "compare_methods", "compare_identities", "track_video", "webcam_frame"}
    # the gr.Examples loaders take a dataset index, not a file; everything else with a file input is public API
    assert {d["api_name"] for d, _ in file_deps} == public


def test_no_server_file_is_read_through_any_endpoint(server, targets) -> None:
    client = server.client
    grey = Path(targets.paths["photo"]).with_name("grey_upload.png")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(grey)
    uploaded = client.upload(str(grey))
    attempts, refused, blank = 0, 0, 0
    messages: dict[tuple, set[str]] = {}
    _OPENED.clear()
    server.detected.clear()
    _WATCH.update(targets.watch)
    try:
        for dep, slots in _file_inputs(server.config):
            for slot in slots:
                for shape_name, shape in SHAPES.items():
                    for kind, path in targets.paths.items():
                        data = _defaults(server.config, dep)
                        for other in slots:  # the other photo slots hold a real upload
                            data[other] = {"path": uploaded, "meta": META, "orig_name": "grey.png"}
                        data[slot] = shape(path)
                        calls = [("join", client.join, dep["id"])]
                        if dep.get("api_visibility") == "public" and shape_name in ("payload", "payload+meta"):
                            calls.append(("call", client.call, dep["api_name"]))
                        for how, send, endpoint in calls:
                            ok, message = send(endpoint, data)
                            attempts += 1
                            refused += not ok
                            blank += not message
                            if kind in ("photo", "text", "folder", "missing"):
                                key = (dep["id"], slot, shape_name, how)
                                messages.setdefault(key, set()).add(_masked(message, path))
    finally:
        _WATCH.clear()
    reads = len(_OPENED) + len(server.detected)
    record("app_file_reads", attempts=attempts, refused=refused, blank_errors=blank,
           reads_outside_upload_folder=reads)
    assert attempts >= 200
    assert reads == 0, f"server files read: {_OPENED}, photos decoded: {len(server.detected)}"
    assert refused == attempts and blank == 0
    # no existence oracle: a photo, a text file, a folder and a missing path get the same answer
    oracle = {k: v for k, v in messages.items() if len(v) > 1}
    assert not oracle, oracle


def test_real_uploads_are_accepted_with_and_without_meta(server, tmp_path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((80, 80, 3), 128, np.uint8)).save(grey)
    uploaded = server.client.upload(str(grey))
    server.detected.clear()
    for payload in ({"path": uploaded, "meta": META, "orig_name": "my grey.png"}, {"path": uploaded}):
        ok, message = server.client.call("reconstruct", [payload, "fitting", True, True, None])
        assert not ok and "No face found in" in str(message), message
    assert len(server.detected) == 2  # decoded and passed to the detector each time


def test_file_route_serves_no_server_file(server, targets) -> None:
    for kind in ("photo", "text", "etc_passwd", "repo_file", "dotdot"):
        r = server.client.http.get(f"{server.client.base}{API}/file={targets.paths[kind]}")
        assert r.status_code in (403, 404), (kind, r.status_code)


def test_upload_gate_unit(tmp_path) -> None:
    """client_upload: inside the roots only, symlinks resolved, one message for every refusal."""
    root = tmp_path / "uploads"
    root.mkdir()
    inside = root / "a" / "photo.png"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    (root / "link.png").symlink_to(outside)
    ok = H.client_upload({"path": str(inside), "orig_name": "../../Holiday.jpg"}, roots=[root])
    assert ok == H.Upload(str(inside.resolve()), "Holiday.jpg")
    assert H.client_upload(None, roots=[root]) is None
    answers = set()
    for bad in (str(outside), str(tmp_path / "missing.png"), str(tmp_path), str(root / "link.png"),
                str(root / ".." / "secret.png"), str(root), "", 5, ["x"], {"path": None}, "a\x00b",
                {"path": {"nested": 1}}, f"http://127.0.0.1/{outside}"):
        with pytest.raises(H.AppError) as info:
            H.client_upload(bad if isinstance(bad, dict) else {"path": bad}, roots=[root])
        answers.add(str(info.value))
    assert len(answers) == 1 and "upload it again" in answers.pop()
    # a payload handed straight to the handlers goes through the same gate
    with pytest.raises(H.AppError, match="upload it again"):
        H.load_photo({"path": str(outside)})


def test_upload_folder_matches_gradio() -> None:
    from gradio.utils import get_upload_folder

    assert H.gradio_upload_folder() == Path(get_upload_folder()).resolve()


def test_login_is_throttled_on_the_real_login_route(tmp_path) -> None:
    """30 wrong passwords against app.py's --auth login: locked after 5, the right password refused while locked."""
    import app
    from annotate.login import LoginThrottle, password_check

    port = free_port()
    args = app.parse_args(["--host", "127.0.0.1", "--port", str(port), "--no-warmup",
                           "--annotate-dir", str(tmp_path / "none")])
    import gradio as gr

    with gr.Blocks() as demo:
        gr.Markdown("login test")
    throttle = LoginThrottle(password_check({"alice": "correct horse"}), failure_delay_s=0.05, lock_base_s=60)
    app.serve(demo, args, {"auth": throttle.check}, prevent_thread_lock=True, quiet=True)
    client = GradioHTTP(f"http://127.0.0.1:{port}")
    try:
        def login(password: str) -> int:
            return client.http.post(f"{client.base}/login", data={"username": "alice", "password": password}
                                    ).status_code

        start = time.perf_counter()
        codes = [login(f"guess{i}") for i in range(30)]
        seconds = time.perf_counter() - start
        right_while_locked = login("correct horse")
        record("login_throttle", wrong_attempts=30, accepted=codes.count(200), seconds=round(seconds, 2),
               right_password_while_locked=right_while_locked)
        assert codes.count(200) == 0 and right_while_locked != 200
        assert throttle.locked("alice")
        throttle._failures.clear()  # the lock expired
        assert login("correct horse") == 200
    finally:
        client.close()
        demo.close()


def test_app_login_has_one_source_of_users(tmp_path) -> None:
    """`app.py --auth rita:anything` must not log in as the store's reviewer rita: with store users, the store is
    the login (its passwords, its roles) and --auth is refused; without, --auth pairs (throttled) are the login."""
    import asyncio
    import inspect

    import app
    from annotate.store import Store

    project = tmp_path / "project"
    store = Store(project, create=True)
    store.create_project("default")
    args = app.parse_args(["--annotate-dir", str(project), "--auth", "rita:anything1"])
    check = app.login_kwargs(args, app.auth_pairs(args))["auth"]  # no store users: the --auth pairs log in
    assert inspect.iscoroutinefunction(check)  # Gradio awaits only real coroutine functions
    assert asyncio.run(check("rita", "anything1")) and not asyncio.run(check("rita", "wrong-pass"))
    assert app.login_kwargs(app.parse_args(["--annotate-dir", str(project)]), []) == {}  # nobody: no login
    store.add_user("rita", "reviewer-password", "reviewer")
    with pytest.raises(SystemExit, match="has its own users"):
        app.login_kwargs(args, app.auth_pairs(args))
    check = app.login_kwargs(app.parse_args(["--annotate-dir", str(project)]), [])["auth"]
    assert inspect.iscoroutinefunction(check)
    assert not asyncio.run(check("rita", "anything1"))
    assert asyncio.run(check("rita", "reviewer-password"))


def test_example_photos_still_work(server) -> None:
    """The examples are served from Gradio's cache (inside the upload folder): a click must pass the gate."""
    loaders = [d for d in server.config["dependencies"] if str(d.get("api_name", "")).startswith("load_example")]
    assert loaders
    ok, value = server.client.join(loaders[0]["id"], [0])
    assert ok, value
    photo = value[0]["value"]  # an update of the photo component: the cached example
    assert Path(photo["path"]).resolve().is_relative_to(H.gradio_upload_folder())
    server.detected.clear()
    ok, message = server.client.call("reconstruct", [photo, "fitting", True, True, None])
    assert not ok and "No face found in" in str(message), message  # decoded, then our stand-in finds no face
    assert len(server.detected) == 1
