"""``rdbench manifest``: writing manifests and checking image sets; bad input -> one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from imagegen import (
    draw_image,
    encode,
    make_image_set,
    png_claiming_size,
    write_manifest_lines,
)

from rdbench.cli import main


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _good(root: Path, manifest: bool = True) -> Path:
    return make_image_set(root, 2, seeds=[0, 1], size=(8, 8), manifest=manifest)


def _png(root: Path, name: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(encode(draw_image(0, 0, size=(8, 8))))


def test_writes_manifest_and_refuses_to_overwrite(tmp_path, capsys):
    root = make_image_set(tmp_path / "s", 2, seeds=[0, 1, 2], size=(8, 8), manifest=False)
    code, out, _ = run(["manifest", str(root)], capsys)
    assert code == 0 and "6 images, 2 prompts" in out
    lines = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert lines[0] == {
        "path": "p0000/0.png",
        "prompt_id": "p0000",
        "prompt": None,
        "seed": 0,
        "category": None,
        "meta": {},
    }
    code, _, err = run(["manifest", str(root)], capsys)
    assert code == 2 and "already exists; pass --force" in err
    plan = tmp_path / "plan.jsonl"
    plan.write_text(
        "".join(
            json.dumps({"path": f"{p}/{s}.png", "prompt_id": p, "prompt": f"{p} text", "seed": s})
            + "\n"
            for p in ("p0000", "p0001")
            for s in range(3)
        )
    )
    code, out, _ = run(["manifest", str(root), "--prompts", str(plan), "--force"], capsys)
    assert code == 0
    assert json.loads((root / "manifest.jsonl").read_text().splitlines()[-1])["prompt"] == (
        "p0001 text"
    )


def test_misfit_names_are_listed(tmp_path, capsys):
    root = tmp_path / "s"
    _png(root, "p/0.png")
    _png(root, "p/final image.png")
    code, _, err = run(["manifest", str(root)], capsys)
    assert code == 2 and "'p/final image.png'" in err and "<prompt_id>/<seed>" in err
    assert not (root / "manifest.jsonl").exists()


def test_check_good_set(tmp_path, capsys):
    root = _good(tmp_path / "s")
    code, out, _ = run(["manifest", "--check", str(root)], capsys)
    assert code == 0 and "4 images decoded, 0 skipped; manifest with 2 prompts" in out
    code, _, err = run(["manifest", "--check", "--force", str(root)], capsys)
    assert code == 2 and "--check does not write" in err


def _empty(root: Path) -> str:
    root.mkdir()
    return "is empty"


def _bytes_file(name: str, data: bytes, expected: str):
    def build(root: Path) -> str:
        _good(root, manifest=False)  # scanned, not listed
        (root / name).write_bytes(data)
        return expected

    return build


def _truncated_jpeg(root: Path) -> str:
    data = encode(draw_image(0, 0, size=(64, 64), style="noise"), "JPEG")
    return _bytes_file("cut.jpg", data[: len(data) // 2], "cut.jpg")(root)


def _corrupt_png(root: Path) -> str:
    data = bytearray(encode(draw_image(0, 0, style="noise")))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = b"\xff" * 40
    return _bytes_file("broken.png", bytes(data), "broken.png")(root)


def _non_utf8_name(root: Path) -> str:
    _good(root, manifest=False)
    with open(os.fsencode(root) + b"/bad\xff name.png", "wb") as fh:
        fh.write(b"not an image")
    return "bad\\udcff name.png"


def _symlink_loop(root: Path) -> str:
    _good(root, manifest=False)
    os.symlink("loop.png", root / "loop.png")
    return "'loop.png': symlink loop"


def _fifo(root: Path) -> str:
    _good(root, manifest=False)
    os.mkfifo(root / "pipe.png")
    return "'pipe.png': not a regular file"


def _manifest_line(record: dict, expected: str):
    def build(root: Path) -> str:
        _good(root)
        lines = (root / "manifest.jsonl").read_text().splitlines()
        (root / "manifest.jsonl").write_text("\n".join([*lines, json.dumps(record)]) + "\n")
        return expected

    return build


BAD_INPUTS = {
    "empty folder": _empty,
    "zero-byte file": _bytes_file("zero.png", b"", "zero.png"),
    "text named png": _bytes_file("text.png", b"hello\n", "text.png"),
    "truncated jpeg": _truncated_jpeg,
    "corrupt png": _corrupt_png,
    "30000x30000": _bytes_file("huge.png", png_claiming_size(30000, 30000), "huge.png"),
    "non-utf8 name": _non_utf8_name,
    "symlink loop": _symlink_loop,
    "fifo": _fifo,
    "outside": _manifest_line(
        {"path": "../x.png", "prompt_id": "z", "prompt": "", "seed": 0}, "line 5: path '../x.png'"
    ),
    "missing": _manifest_line(
        {"path": "z/0.png", "prompt_id": "z", "prompt": "", "seed": 0}, "'z/0.png': file does not"
    ),
    "duplicate": _manifest_line(
        {"path": "p0000/0.png", "prompt_id": "z", "prompt": "", "seed": 0}, "lines 1 and 5"
    ),
    "duplicate key": _manifest_line(
        {"path": "p0000/9.png", "prompt_id": "p0000", "prompt": "", "seed": 1}, "lines 2 and 5"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    root = tmp_path / "set"
    expected = BAD_INPUTS[case](root)
    code, out, err = run(["manifest", "--check", str(root)], capsys)
    assert code == 2
    assert "Traceback" not in err + out
    lines = [line for line in err.splitlines() if line.startswith("rdbench: error:")]
    assert len(lines) == 1 and expected in lines[0], err
    err.encode("utf-8")  # printable


def test_on_error_skip_lists_bad_files_and_succeeds(tmp_path, capsys):
    root = tmp_path / "set"
    _good(root)
    (root / "zero.png").write_bytes(b"")
    (root / "huge.png").write_bytes(png_claiming_size(30000, 30000))
    os.symlink("loop.png", root / "loop.png")
    write_manifest_lines(
        root,
        [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
        + [
            {"path": p, "prompt_id": "z", "prompt": None, "seed": i}
            for i, p in enumerate(["zero.png", "huge.png", "loop.png", "gone.png"])
        ],
    )
    code, out, err = run(["manifest", "--check", "--on-error", "skip", str(root)], capsys)
    assert code == 0 and "4 images decoded, 4 skipped" in out
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert [line.split("'")[1] for line in skipped] == [
        "loop.png",
        "gone.png",
        "zero.png",
        "huge.png",
    ]


def test_real_entry_point_prints_no_traceback(tmp_path):
    root = tmp_path / "set"
    _non_utf8_name(root)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(
        [sys.executable, "-m", "rdbench", "manifest", "--check", str(root)],
        capture_output=True,
        env=env,
        timeout=120,
    )
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 2
    assert "Traceback" not in err and "bad\\udcff name.png" in err
