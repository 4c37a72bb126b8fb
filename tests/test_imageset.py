"""The image-set format: folders, zips, manifests, bad files, pairing, manifest writing."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from imagegen import (
    draw_image,
    encode,
    make_image_set,
    make_plain_folder,
    png_claiming_size,
    write_manifest_lines,
    zip_folder,
)

from rdbench.errors import RdbenchError
from rdbench.imageset import (
    ImageItem,
    ImageSet,
    load_prompt_plan,
    pair,
    parse_manifest,
    write_manifest,
)


def _record(path: str, prompt_id: str = "p", seed: int = 0, **extra) -> dict:
    return {"path": path, "prompt_id": prompt_id, "prompt": "a cat", "seed": seed, **extra}


def _png(path: Path, index: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(draw_image(index, index, size=(16, 16))))
    return path


# --------------------------------------------------------------------------- good sets


def test_folder_with_manifest(tmp_path):
    root = make_image_set(tmp_path / "s", n_prompts=3, seeds=[0, 5], size=(16, 16))
    s = ImageSet.open(root)
    assert len(s) == 6 and s.has_manifest and s.skipped == []
    assert [i.key for i in s][:2] == ["p0000/0.png", "p0000/5.png"]
    first = s.items[0]
    assert (first.prompt_id, first.seed, first.prompt) == ("p0000", 0, "a red circle")
    assert first.category == "red" and first.meta == {} and first.line == 1
    assert s.manifest_sha256 == hashlib.sha256((root / "manifest.jsonl").read_bytes()).hexdigest()
    groups = s.prompts()
    assert list(groups) == ["p0000", "p0001", "p0002"]
    assert [i.seed for i in groups["p0001"]] == [0, 5]
    assert s.read_bytes(first) == (root / "p0000/0.png").read_bytes() == first.read_bytes(s)
    assert np.array_equal(np.asarray(s.load(first)), np.asarray(draw_image(0, 0, size=(16, 16))))
    assert ImageSet.open(root / "manifest.jsonl").items == s.items
    assert len({first, s.items[0]}) == 1  # items are hashable


def test_plain_folder_is_scanned_recursively_sorted_and_filtered(tmp_path):
    root = make_plain_folder(tmp_path / "plain", 3, size=(16, 16))
    _png(root / "sub dir" / "Z.PNG")
    _png(root / ".hidden" / "h.png")
    _png(root / ".h.png")
    (root / "notes.txt").write_text("not an image")
    s = ImageSet.open(root)
    keys = [i.key for i in s]
    assert keys == ["img_000.png", "img_001.png", "img_002.png", "sub dir/Z.PNG"]
    assert not s.has_manifest and s.items[0].pair_key is None
    expected = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    assert s.manifest_sha256 == expected
    with pytest.raises(RdbenchError, match="no manifest.jsonl"):
        s.prompts()


def test_manifest_hash_of_plain_folder_changes_with_contents_listing(tmp_path):
    root = make_plain_folder(tmp_path / "plain", 2, size=(16, 16))
    before = ImageSet.open(root).manifest_sha256
    _png(root / "img_999.png")
    assert ImageSet.open(root).manifest_sha256 != before


@pytest.mark.parametrize("top_folder", [None, "myset"])
def test_zip_round_trip(tmp_path, top_folder):
    root = make_image_set(tmp_path / "s", n_prompts=2, seeds=[0, 1], size=(16, 16))
    archive = zip_folder(root, tmp_path / "s.zip", top_folder=top_folder)
    folder_set, zip_set = ImageSet.open(root), ImageSet.open(archive)
    assert zip_set.has_manifest and zip_set.items == folder_set.items
    assert zip_set.manifest_sha256 == folder_set.manifest_sha256
    for a, b in zip(folder_set, zip_set, strict=True):
        assert folder_set.read_bytes(a) == zip_set.read_bytes(b)
    restored = pickle.loads(pickle.dumps(zip_set))  # data-loader workers reopen the archive
    assert restored.read_bytes(restored.items[-1]) == folder_set.read_bytes(folder_set.items[-1])


def test_zip_of_plain_folder(tmp_path):
    root = make_plain_folder(tmp_path / "plain", 3, size=(16, 16))
    s = ImageSet.open(zip_folder(root, tmp_path / "plain.zip"))
    assert not s.has_manifest and [i.key for i in s] == [i.key for i in ImageSet.open(root)]
    assert "plain.zip:img_000.png" in s.describe(s.items[0])


def test_zip_unsafe_members_are_refused_or_skipped(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", encode(draw_image(0, 0, size=(8, 8))))
        zf.writestr("../escape.png", b"x")
        zf.writestr("/abs.png", b"x")
    with pytest.raises(RdbenchError, match=r"2 bad file.*'\.\./escape\.png'.*'/abs\.png'"):
        ImageSet.open(archive)
    s = ImageSet.open(archive, on_error="skip")
    assert [i.key for i in s] == ["ok.png"]
    assert sorted(name for name, _ in s.skipped) == ["../escape.png", "/abs.png"]


def test_file_that_is_not_a_zip_or_folder(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"not a zip")
    with pytest.raises(RdbenchError, match="neither a folder nor a .zip"):
        ImageSet.open(path)
    with pytest.raises(RdbenchError, match="does not exist"):
        ImageSet.open(tmp_path / "missing")


# --------------------------------------------------------------------------- bad inputs


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(RdbenchError, match="is empty: no image files"):
        ImageSet.open(tmp_path / "empty")


def test_bad_image_files_fail_at_decoding_naming_the_file(tmp_path):
    root = tmp_path / "bad"
    _png(root / "good.png")
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("I am text")
    jpeg = encode(draw_image(1, 1, size=(64, 64), style="noise"), "JPEG")
    (root / "trunc.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "huge.png").write_bytes(png_claiming_size(30000, 30000))
    s = ImageSet.open(root)  # opening lists files; decoding finds the bad ones
    assert len(s) == 5
    with pytest.raises(RdbenchError, match="empty.png"):
        list(s.iter_rgb())
    decoded = [item.key for item, image in s.iter_rgb(on_error="skip")]
    assert decoded == ["good.png"]
    assert [name for name, _ in s.skipped] == ["empty.png", "huge.png", "text.png", "trunc.jpg"]
    assert s.skipped[0] == ("empty.png", "the file is empty (0 bytes); it is not an image")
    assert "decompression bomb" in s.skipped[1][1]
    list(s.iter_rgb(on_error="skip"))
    assert len(s.skipped) == 4  # not listed twice


def test_file_vanishing_after_open_is_a_clear_error(tmp_path):
    root = make_plain_folder(tmp_path / "s", 2, size=(8, 8))
    s = ImageSet.open(root)
    (root / "img_001.png").unlink()
    with pytest.raises(RdbenchError, match=r"cannot read '.*img_001.png': No such file"):
        s.read_bytes(s.items[1])


def test_non_utf8_and_space_file_names_round_trip(tmp_path):
    root = tmp_path / "names"
    _png(root / "with space.png")
    raw = os.fsencode(root) + b"/caf\xe9.png"
    with open(raw, "wb") as fh:
        fh.write(encode(draw_image(2, 2, size=(8, 8))))
    s = ImageSet.open(root)
    keys = [i.key for i in s]
    assert keys == ["caf\udce9.png", "with space.png"]
    assert os.fsencode(keys[0]) == b"caf\xe9.png"
    assert s.read_bytes(s.items[0]) == Path(os.fsdecode(raw)).read_bytes()
    assert os.fsencode(s.describe(s.items[0])) == raw
    repr(s.describe(s.items[0])).encode("utf-8")  # printable once quoted
    assert s.load(s.items[0]).size == (8, 8)


def test_symlink_loops_are_reported(tmp_path):
    root = tmp_path / "loops"
    _png(root / "good.png")
    os.symlink("b.png", root / "a.png")
    os.symlink("a.png", root / "b.png")
    os.symlink(".", root / "sub")  # a directory link back to itself: infinite recursion
    with pytest.raises(RdbenchError, match=r"'a.png': symlink loop") as info:
        ImageSet.open(root)
    assert "'sub': symlink loop" in str(info.value)
    s = ImageSet.open(root, on_error="skip")
    assert [i.key for i in s] == ["good.png"]
    assert [name for name, _ in s.skipped] == ["a.png", "b.png", "sub"]


def test_symlinked_folder_outside_is_followed_when_scanning(tmp_path):
    outside = make_plain_folder(tmp_path / "outside", 2, size=(8, 8))
    root = tmp_path / "set"
    root.mkdir()
    os.symlink(outside, root / "linked")
    assert [i.key for i in ImageSet.open(root)] == ["linked/img_000.png", "linked/img_001.png"]


def test_fifo_and_directory_named_png_are_unreadable(tmp_path):
    root = tmp_path / "odd"
    _png(root / "good.png")
    os.mkfifo(root / "pipe.png")
    with pytest.raises(RdbenchError, match=r"'pipe.png': not a regular file"):
        ImageSet.open(root)
    (root / "dir.png").mkdir()
    write_manifest_lines(root, [_record("good.png"), _record("dir.png", seed=1)])
    with pytest.raises(RdbenchError, match=r"'dir.png': a directory.*manifest line 2"):
        ImageSet.open(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    root = tmp_path / "perm"
    _png(root / "good.png")
    locked = _png(root / "locked.png")
    locked.chmod(0)
    try:
        with pytest.raises(RdbenchError, match=r"'locked.png': permission denied"):
            ImageSet.open(root)
        assert [n for n, _ in ImageSet.open(root, on_error="skip").skipped] == ["locked.png"]
    finally:
        locked.chmod(0o644)


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize(
    "path, message",
    [
        ("../outside.png", "points outside the set's folder"),
        ("a/../../outside.png", "points outside the set's folder"),
        ("/etc/passwd", "must be relative"),
        ("a\\b.png", "separate folders with '/'"),
    ],
)
def test_manifest_paths_may_not_leave_the_folder(tmp_path, path, message):
    root = tmp_path / "s"
    _png(root / "good.png")
    write_manifest_lines(root, [_record("good.png"), _record(path, seed=1)])
    for on_error in ("raise", "skip"):
        with pytest.raises(RdbenchError, match=f"line 2: path .*{message}"):
            ImageSet.open(root, on_error=on_error)


def test_manifest_symlink_escaping_the_folder_is_refused(tmp_path):
    secret = _png(tmp_path / "secret.png")
    root = tmp_path / "s"
    _png(root / "good.png")
    os.symlink(secret, root / "link.png")
    write_manifest_lines(root, [_record("good.png"), _record("link.png", seed=1)])
    with pytest.raises(RdbenchError, match=r"line 2: 'link.png' leads outside.*symlink"):
        ImageSet.open(root, on_error="skip")


def test_manifest_missing_files_raise_or_are_skipped(tmp_path):
    root = tmp_path / "s"
    _png(root / "p/0.png")
    write_manifest_lines(root, [_record("p/0.png"), _record("./p/1.png", seed=1)])
    with pytest.raises(RdbenchError, match=r"'p/1.png': file does not exist \(manifest line 2\)"):
        ImageSet.open(root)
    s = ImageSet.open(root, on_error="skip")
    assert [i.key for i in s] == ["p/0.png"]
    assert s.skipped == [("p/1.png", "file does not exist (manifest line 2)")]


def test_plan_without_images_is_empty(tmp_path):
    root = tmp_path / "planned"
    root.mkdir()
    write_manifest_lines(root, [_record(f"p/{s}.png", seed=s) for s in range(3)])
    with pytest.raises(RdbenchError, match="is empty: its manifest.jsonl lists no usable image"):
        ImageSet.open(root, on_error="skip")


def test_duplicates_name_both_lines_even_when_skipping(tmp_path):
    root = tmp_path / "s"
    for name in ("a.png", "b.png"):
        _png(root / name)
    write_manifest_lines(root, [_record("a.png", "p", 3), _record("b.png", "p", 3)])
    with pytest.raises(RdbenchError, match=r"lines 1 and 2 both have prompt_id 'p', seed 3"):
        ImageSet.open(root, on_error="skip")
    write_manifest_lines(root, [_record("a.png", "p", 1), _record("./a.png", "q", 1)])
    with pytest.raises(RdbenchError, match=r"lines 1 and 2 both point to 'a.png'"):
        ImageSet.open(root)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"path": "a.png", "prompt_id": "p", "seed": 1}', "line 2: missing field.*prompt"),
        ('{"path": "a.png", "prompt_id": 7, "prompt": null, "seed": 1}', "'prompt_id' must be str"),
        ('{"path": "a.png", "prompt_id": "p", "prompt": null, "seed": "1"}', "'seed' must be int"),
        ('{"path": "a.png", "prompt_id": "p", "prompt": null, "seed": true}', "'seed' must be int"),
        ('{"path": "a.png", "prompt_id": "p", "prompt": null, "seed": -1}', "seed must be >= 0"),
        (
            '{"path": "a.png", "prompt_id": "p", "prompt": 3, "seed": 1}',
            "'prompt' must be str or null",
        ),
        ('{"path": "a.png", "prompt_id": "p", "prompt": "", "seed": 1, "meta": []}', "'meta' must"),
    ],
)
def test_manifest_structure_errors_name_the_line(line, message):
    first = json.dumps(_record("b.png", seed=0))
    with pytest.raises(RdbenchError, match=message):
        parse_manifest(f"{first}\n{line}\n".encode(), "m.jsonl")


def test_manifest_extras_blank_lines_and_invalid_utf8():
    lines = [
        json.dumps(_record("a.png", seed=0, category=None, meta={"steps": 25}, model="x")),
        "",
        json.dumps(_record("b.png", seed=1)),
    ]
    items = parse_manifest("\n".join(lines).encode(), "m")
    assert items[0].meta == {"steps": 25, "model": "x"} and items[1].line == 3
    with pytest.raises(RdbenchError, match="line 1: not valid UTF-8"):
        parse_manifest(b'{"path": "\xff"}', "m")


def test_on_error_value_is_checked(tmp_path):
    with pytest.raises(RdbenchError, match="on_error must be one of"):
        ImageSet.open(tmp_path, on_error="ignore")


# --------------------------------------------------------------------------- pairing


def test_pairing_counts_and_order(tmp_path):
    a = ImageSet.open(make_image_set(tmp_path / "a", 3, seeds=range(4), size=(8, 8)))
    b = ImageSet.open(make_image_set(tmp_path / "b", 3, seeds=range(2, 6), size=(8, 8), seed=1))
    p = pair(a, b)
    assert p.n_matched == 6 and len(p.only_a) == 6 and len(p.only_b) == 6
    assert all(x.pair_key == y.pair_key for x, y in p.pairs)
    assert [x.pair_key for x, _ in p.pairs][:2] == [("p0000", 2), ("p0000", 3)]
    assert {i.seed for i in p.only_b} == {4, 5}
    assert p.summary().startswith("6 pairs matched by (prompt_id, seed)")


def test_sets_without_manifest_do_not_pair(tmp_path):
    a = ImageSet.open(make_image_set(tmp_path / "a", 1, seeds=range(2), size=(8, 8)))
    b = ImageSet.open(make_plain_folder(tmp_path / "b", 2, size=(8, 8)))
    p = pair(a, b)
    assert p.n_matched == 0 and len(p.only_a) == 2 and "has no manifest.jsonl" in p.note


# --------------------------------------------------------------------------- writing


def test_write_manifest_round_trip_with_plan(tmp_path):
    root = make_image_set(tmp_path / "s", 2, seeds=[0, 3, 10], size=(8, 8), manifest=False)
    _png(root / "p0001" / "7.jpg")
    target = write_manifest(root)
    items = ImageSet.open(root).items
    assert target == root / "manifest.jsonl"
    assert [(i.prompt_id, i.seed) for i in items] == [
        ("p0000", 0),
        ("p0000", 3),
        ("p0000", 10),
        ("p0001", 0),
        ("p0001", 3),
        ("p0001", 7),
        ("p0001", 10),
    ]
    assert items[5].key == "p0001/7.jpg" and items[0].prompt is None
    with pytest.raises(RdbenchError, match="already exists; pass --force"):
        write_manifest(root)
    plan = tmp_path / "plan.jsonl"
    plan.write_text(
        "".join(
            json.dumps(
                {
                    "path": f"{p}/0.png",
                    "prompt_id": p,
                    "prompt": f"text {p}",
                    "seed": 0,
                    "category": "c" if p == "p0000" else None,
                }
            )
            + "\n"
            for p in ("p0000", "p0001", "p0002")
        )
    )
    prompts, categories = load_prompt_plan(plan)
    write_manifest(root, prompts=prompts, categories=categories, force=True)
    items = ImageSet.open(root).items
    assert items[0].prompt == "text p0000" and items[0].category == "c"
    assert items[-1].prompt == "text p0001" and items[-1].category is None
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["manifest.jsonl"]


def test_write_manifest_refuses_misfits_duplicates_and_unknown_prompts(tmp_path):
    root = tmp_path / "s"
    _png(root / "p" / "0.png")
    _png(root / "loose.png")
    _png(root / "p" / "deep" / "1.png")
    _png(root / "p" / "seed1.png")
    with pytest.raises(RdbenchError, match=r"3 file\(s\).*<prompt_id>/<seed>") as info:
        write_manifest(root)
    assert all(name in str(info.value) for name in ("loose.png", "p/deep/1.png", "p/seed1.png"))
    for name in ("loose.png", "p/deep/1.png", "p/seed1.png"):
        (root / name).unlink()
    _png(root / "p" / "00.png")
    with pytest.raises(
        RdbenchError, match="same prompt_id and seed twice: 'p/0.png' and 'p/00.png'"
    ):
        write_manifest(root)
    (root / "p" / "00.png").unlink()
    with pytest.raises(RdbenchError, match="are not in the prompt file: 'p'"):
        write_manifest(root, prompts={"q": "other"})
    assert not (root / "manifest.jsonl").exists()


def test_write_manifest_keeps_undecodable_names(tmp_path):
    root = tmp_path / "s"
    raw_dir = os.fsencode(root) + b"/pr\xe9"
    os.makedirs(raw_dir)
    with open(raw_dir + b"/4.png", "wb") as fh:
        fh.write(encode(draw_image(0, 4, size=(8, 8))))
    write_manifest(root)
    (item,) = ImageSet.open(root).items
    assert os.fsencode(item.prompt_id) == b"pr\xe9" and item.seed == 4
    assert ImageSet.open(root).read_bytes(item).startswith(b"\x89PNG")


def test_item_defaults():
    item = ImageItem(key="x.png")
    assert item.pair_key is None and item.meta == {}


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    import rdbench.imageset as imageset

    root = make_plain_folder(tmp_path / "s", 1, size=(8, 8))
    archive = zip_folder(root, tmp_path / "s.zip")
    size = (root / "img_000.png").stat().st_size
    monkeypatch.setattr(imageset, "MAX_FILE_BYTES", size - 1)  # a limit, not the math under test
    for path in (root, archive):
        s = ImageSet.open(path)
        with pytest.raises(RdbenchError, match=f"file is {size:,} bytes, over"):
            s.read_bytes(s.items[0])


def _set_flag(data: bytes, signature: bytes, offset: int, bit: int) -> bytes:
    """Set a general-purpose flag bit in every header starting with ``signature``."""
    out = bytearray(data)
    start = out.find(signature)
    while start >= 0:
        out[start + offset] |= bit
        start = out.find(signature, start + 1)
    return bytes(out)


def test_zip_members_that_cannot_be_decompressed_are_one_line_errors(tmp_path):
    """Encrypted or corrupt members raised RuntimeError / zlib.error tracebacks, even with
    on_error="skip"; now they are bad files like any other."""
    good = encode(draw_image(0, 0, size=(16, 16)))
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", good)
        zf.writestr("b.png", good + bytes(200))
    data = plain.read_bytes()
    encrypted = tmp_path / "encrypted.zip"
    encrypted.write_bytes(_set_flag(_set_flag(data, b"PK\x03\x04", 6, 1), b"PK\x01\x02", 8, 1))
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(plain) as zf:
        offset = zf.getinfo("b.png").header_offset + 30 + len("b.png")
    raw = bytearray(data)
    raw[offset : offset + 16] = bytes(range(16))  # garbage deflate stream
    corrupt.write_bytes(bytes(raw))
    for archive, broken in ((encrypted, ["a.png", "b.png"]), (corrupt, ["b.png"])):
        s = ImageSet.open(archive)
        for item in s:
            if item.key in broken:
                with pytest.raises(RdbenchError, match=f"cannot read .*{item.key}"):
                    s.read_bytes(item)
            else:
                assert s.read_bytes(item) == good


def test_zip_names_that_normalise_to_the_same_key_are_reported(tmp_path):
    archive = tmp_path / "twice.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/x.png", encode(draw_image(0, 0, size=(8, 8))))
        zf.writestr("a//x.png", encode(draw_image(1, 0, size=(8, 8))))
    s = ImageSet.open(archive, on_error="skip")
    assert [i.key for i in s] == ["x.png"]
    assert [name for name, _ in s.skipped] == ["a//x.png"]


def test_manifest_refuses_two_texts_for_one_prompt_id_and_deep_nesting():
    lines = [
        json.dumps(_record("a.png", seed=0)),
        json.dumps(_record("b.png", seed=1) | {"prompt": "a dog"}),
    ]
    with pytest.raises(RdbenchError, match="lines 1 and 2 give prompt_id 'p' two texts"):
        parse_manifest("\n".join(lines).encode(), "m.jsonl")
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RdbenchError, match="line 1: JSON nested too deeply"):
        parse_manifest(deep.encode(), "m.jsonl")


def test_pairing_notes_prompt_ids_whose_texts_differ(tmp_path):
    for name, text in (("a", "a cat"), ("b", "a red bus")):
        _png(tmp_path / name / "x.png")
        write_manifest_lines(tmp_path / name, [_record("x.png") | {"prompt": text}])
    pairing = pair(ImageSet.open(tmp_path / "a"), ImageSet.open(tmp_path / "b"))
    assert pairing.n_matched == 1 and "1 prompt id(s) have other prompt texts" in pairing.note
    assert pair(ImageSet.open(tmp_path / "a"), ImageSet.open(tmp_path / "a")).note == ""
