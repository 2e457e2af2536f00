"""The security tests' counts (file reads outside the upload folder, fuzzed-import failures, lost saves, broken
exports) merged into artifacts/security_counts.json, so the numbers quoted in reports come from a test run."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "security_counts.json"
_lock = threading.Lock()


def record(section: str, **counts: int | float | str) -> None:
    with _lock:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(ARTIFACT.read_text())
        except (OSError, ValueError):
            data = {}
        data[section] = counts
        tmp = ARTIFACT.with_name(f".{ARTIFACT.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, ARTIFACT)
