from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msma.cli import build_parser, main


def test_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "reconstruct" in out and "evaluate" in out and "train" in out


def test_reconstruct_batch_continues_after_bad_photos(shared_data: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0garbage")
    good = shared_data / "faces_in_the_wild" / "img12.jpg"
    out = tmp_path / "out"
    code = main(["reconstruct", str(blank), str(good), str(corrupt), "-o", str(out), "--format", "glb", "json",
                 "--no-photometric", "--no-texture", "--largest", "--method", "fitting"])
    assert code == 1  # some photos failed
    assert (out / "img12_face0.glb").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["photo"] for entry in summary] == [str(good)]


def test_reconstruct_prints_no_native_detector_logging(tmp_path: Path) -> None:
    """mediapipe's C++ start-up lines (TFLite delegate, absl warnings) do not reach the user's terminal."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "msma", "reconstruct", str(repo / "examples" / "01_portrait.jpg"),
                           "-o", str(tmp_path), "--format", "json"], cwd=repo, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    noise = [line for line in done.stderr.splitlines() if "XNNPACK" in line or line.startswith(("W0000", "I0000"))
             or "absl::InitializeLog" in line]
    assert noise == []
