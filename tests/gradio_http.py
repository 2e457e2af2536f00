"""A small HTTP client for a launched Gradio 6 app, speaking the same protocol as the browser (queue/join by
fn_index, which reaches private endpoints too) and the documented REST API (/gradio_api/call/<name>)."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import httpx

API = "/gradio_api"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(response: httpx.Response):
    event = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield event, line.split(":", 1)[1].strip()


class GradioHTTP:
    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def config(self) -> dict:
        return self.http.get(f"{self.base}/config").json()

    def upload(self, path: str) -> str:
        """POST /gradio_api/upload; returns the server path of the uploaded copy."""
        with open(path, "rb") as fh:
            r = self.http.post(f"{self.base}{API}/upload", files={"files": (path.rsplit("/", 1)[-1], fh)})
        r.raise_for_status()
        return r.json()[0]

    def call(self, api_name: str, data: list[Any]) -> tuple[bool, Any]:
        """The documented REST API: (success, output data or error message)."""
        r = self.http.post(f"{self.base}{API}/call/{api_name}", json={"data": data})
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}: {r.text[:200]}"
        event_id = r.json()["event_id"]
        with self.http.stream("GET", f"{self.base}{API}/call/{api_name}/{event_id}") as stream:
            for event, payload in _events(stream):
                if event == "complete":
                    return True, json.loads(payload)
                if event == "error":
                    return False, json.loads(payload) if payload not in ("", "null") else None
        return False, "stream ended"

    def join(self, fn_index: int, data: list[Any]) -> tuple[bool, Any]:
        """What the browser does: queue/join with an fn_index (private endpoints included)."""
        session = uuid.uuid4().hex[:11]
        body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
        r = self.http.post(f"{self.base}{API}/queue/join", json=body)
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}: {r.text[:200]}"
        with self.http.stream("GET", f"{self.base}{API}/queue/data", params={"session_hash": session}) as stream:
            for _event, payload in _events(stream):
                msg = json.loads(payload)
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    return bool(msg.get("success")), out.get("data") if msg.get("success") else out.get("error")
        return False, "stream ended"
