from __future__ import annotations

from pathlib import Path

from annotate.cli import main


def test_cli_end_to_end(tmp_path: Path, photo_folder: Path, capsys) -> None:
    d = str(tmp_path / "proj")
    assert main(["init", "-d", d]) == 0
    assert main(["import", str(photo_folder), "-d", d]) == 0
    assert main(["users", "add", "lab", "-d", d, "--role", "labeler", "--password", "pw123456"]) == 0
    assert main(["users", "list", "-d", d]) == 0
    assert main(["status", "-d", d]) == 0
    for fmt in ("pts", "coco", "dlib", "hf"):
        assert main(["export", "-d", d, "-f", fmt, "-o", str(tmp_path / f"out_{fmt}"), "--status", "all"]) == 0
    assert main(["report", "-d", d, "--out", str(tmp_path / "report.html")]) == 0
    out = capsys.readouterr().out
    assert "added 4 image(s)" in out and "lab\tlabeler" in out and "0 of 4 done" in out
    assert (tmp_path / "report.html").is_file() and (tmp_path / "out_pts" / "img0.pts").is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.xml").write_text("<dataset><images>\n<image file='../../etc/passwd'/></images></dataset>")
    assert main(["import", str(bad), "-d", d]) == 2  # refused path -> non-zero exit
    assert main(["status", "-d", str(tmp_path / "nowhere")]) == 2
