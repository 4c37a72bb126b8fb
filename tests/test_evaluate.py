"""``rdbench evaluate`` end to end: procedurally drawn image sets, tiny random-weight extractors
and a reward saved in the real checkpoint formats and loaded through the real loaders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from imagegen import make_image_set, make_plain_folder
from tiny_models import make_dinov2, make_inception, make_open_clip
from tiny_rewards import TINY_ARCH, make_aesthetic_mlp, make_open_clip_file

import rdbench
from rdbench.cli import cli, main
from rdbench.cli._output import format_value
from rdbench.errors import RdbenchError
from rdbench.features import load_extractor
from rdbench.features.extract import extract_features
from rdbench.imageset import ImageSet
from rdbench.metrics.fid import fid_from_features
from rdbench.metrics.sets import MetricOptions, compute_set_metrics
from rdbench.results import Result

REPO = Path(__file__).resolve().parents[1]
N_PROMPTS, SEEDS = 4, range(6)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    w = root / "weights"
    clip_model, clip_file = make_open_clip(w)
    ns = SimpleNamespace(
        root=root,
        div=make_image_set(root / "div", N_PROMPTS, SEEDS, size=(48, 48)),
        other=make_image_set(root / "other", N_PROMPTS, SEEDS, size=(48, 48), seed=1),
        col=make_image_set(root / "col", N_PROMPTS, SEEDS, size=(48, 48), style="collapsed"),
        inception=make_inception(w),
        dinov2=make_dinov2(w / "dinov2"),
        clip_model=clip_model,
        clip=clip_file,
        mlp=make_aesthetic_mlp(w / "aesthetic"),
        reward_clip=make_open_clip_file(w, seed=1),
    )
    ns.weights = {"inception": str(ns.inception), "clip": str(ns.clip), "dinov2": str(ns.dinov2)}
    ns.clip_options = {"clip": {"model": clip_model}}
    return ns


def _weights_args(world) -> list[str]:
    return [
        "--weights", f"inception={world.inception}", "--weights", f"clip={world.clip}",
        "--weights", f"dinov2={world.dinov2}",
        "--extractor-option", f"clip.model={world.clip_model}",
    ]  # fmt: skip


def _reward_args(world) -> list[str]:
    return [
        "--reward", "aesthetic", "--weights", f"aesthetic={world.mlp}",
        "--reward-option", f"aesthetic.arch={TINY_ARCH}",
        "--reward-option", f"aesthetic.clip_weights={world.reward_clip}",
    ]  # fmt: skip


def _api(world, image_dir, reference=None, **overrides):
    options = {
        "weights": world.weights,
        "extractor_options": world.clip_options,
        "cache": False,
        "progress": False,
        "quiet": True,
    }
    return rdbench.evaluate.run_evaluation(image_dir, reference, **(options | overrides))


_FEATURES: dict[tuple[str, Path], np.ndarray] = {}


def _features(world, name: str, folder: Path) -> np.ndarray:
    if (name, folder) not in _FEATURES:
        options = {"model": world.clip_model} if name == "clip" else {}
        ext = load_extractor(name, device="cpu", weights=world.weights[name], **options)
        feats = extract_features(ImageSet.open(folder), ext, cache=False, progress=False)
        _FEATURES[name, folder] = feats.array
    return _FEATURES[name, folder]


@pytest.fixture(scope="module")
def collapsed_run(world, tmp_path_factory):
    """The collapsed set against the diverse one, every default metric, through CliRunner."""
    out = tmp_path_factory.mktemp("out") / "sub" / "result.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RDBENCH_HOME", str(world.root / "home"))
        args = ["evaluate", str(world.col), "--reference", str(world.div)]
        args += [
            "--extractor",
            "dinov2,clip",
            *_weights_args(world),
            *_reward_args(world),
        ]
        args += ["--no-cache", "--out", str(out), "--method", "draft", "--regularizer", "kl"]
        res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return SimpleNamespace(stdout=res.stdout, stderr=res.stderr, out=out)


def _first_table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.split("\n\n")[0].splitlines()
    header = lines[0].split()
    rows = {}
    for line in lines[2:]:
        cells = line.split()
        rows[cells[0]] = cells[1:]
    assert header[:3] == ["metric", "value", "low"]
    return rows


def test_result_file_validates_and_records_provenance(world, collapsed_run):
    result = Result.load(collapsed_run.out)
    assert result.method.name == "draft" and result.method.regularizer == "kl"
    setup = result.setup
    assert (setup.n_images, setup.n_prompts, setup.n_seeds) == (24, N_PROMPTS, len(SEEDS))
    assert (setup.n_reference_images, setup.n_pairs) == (24, 24)
    manifest = (world.col / "manifest.jsonl").read_bytes()
    assert result.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
    ref_manifest = (world.div / "manifest.jsonl").read_bytes()
    assert result.reference_manifest_sha256 == hashlib.sha256(ref_manifest).hexdigest()
    assert [(e.id, e.resize_mode) for e in result.extractors] == [
        ("dinov2", "hf_resize_center_crop"),
        ("clip", "resize_center_crop"),
    ]
    assert result.provenance.rdbench_version == rdbench.__version__
    assert "numpy" in result.provenance.versions and "torch" in result.provenance.versions
    assert "clip:rdbench-tiny-clip:openai:" in result.notes  # full extractor id, weights hash
    assert "paired 24 of 24 images by (prompt_id, seed)" in collapsed_run.stderr


def _fid_by_gram_matrix(x: np.ndarray, y: np.ndarray) -> float:
    """FID for N < d, independently of rdbench.metrics.fid: with centred A, B and
    S1 = A^T A / (n1 - 1), S2 = B^T B / (n2 - 1), the non-zero eigenvalues of S1 S2 are the
    squared singular values of A B^T / sqrt((n1 - 1)(n2 - 1))."""
    a, b = x - x.mean(0), y - y.mean(0)
    c = np.sqrt((len(a) - 1) * (len(b) - 1))
    trace_sqrt = np.linalg.svd(a @ b.T / c, compute_uv=False).sum()
    mean_term = np.sum((x.mean(0) - y.mean(0)) ** 2)
    traces = np.sum(a * a) / (len(a) - 1) + np.sum(b * b) / (len(b) - 1)
    return float(mean_term + traces - 2 * trace_sqrt)


def test_set_metrics_equal_the_metric_functions_on_extracted_features(world, collapsed_run):
    result = Result.load(collapsed_run.out)
    ref, gen = _features(world, "dinov2", world.div), _features(world, "dinov2", world.col)
    names = ["fid", "precision", "recall", "density", "coverage", "vendi", "scd"]
    expected = compute_set_metrics(ref, gen, names, MetricOptions())
    assert expected["fid"] == pytest.approx(fid_from_features(ref, gen), rel=1e-12)
    # N = 24 < d = 32: the covariances are singular and fid.py's eigh fallback agrees with the
    # SVD of the 24 x 24 cross-Gram matrix to ~1e-6 relative
    assert expected["fid"] == pytest.approx(_fid_by_gram_matrix(ref, gen), rel=1e-5)
    for name in names:  # DINOv2's declared default metrics, plus vendi
        assert result.metrics[f"{name}/dinov2"].value == pytest.approx(expected[name], rel=1e-9)
    # CLIP declares vendi and scd (no FID) as its set metrics, plus per-prompt diversity.
    clip_keys = sorted(k for k in result.metrics if k.endswith("/clip"))
    assert clip_keys == ["prompt_diversity/clip", "prompt_vendi/clip", "scd/clip", "vendi/clip"]


def test_inception_features_at_2048_dims(world):
    # FID at d=2048 costs seconds (eigh of a singular covariance), so it runs on DINOv2 above.
    names = ("kid", "precision", "recall", "density", "coverage", "scd", "vendi")
    ev = _api(world, world.col, world.div, extractors=("inception",), metrics=names)
    ref, gen = _features(world, "inception", world.div), _features(world, "inception", world.col)
    assert ref.shape == (24, 2048)
    expected = compute_set_metrics(ref, gen, names, MetricOptions())
    for name in names:
        assert ev.result.metrics[f"{name}/inception"].value == pytest.approx(expected[name])
    assert ev.result.extractors[0].resize_mode == "clean"
    assert "inception-2015-12-05:" in ev.result.notes  # the full extractor id, weights hash


def test_collapsed_set_has_zero_per_prompt_diversity(world, collapsed_run):
    result = Result.load(collapsed_run.out)
    rows = _first_table(collapsed_run.stdout)
    for source in ("dinov2", "clip"):
        mv = result.metrics[f"prompt_diversity/{source}"]
        assert mv.value == 0.0 and mv.n == N_PROMPTS  # identical images: exactly 0
        assert result.metrics[f"prompt_vendi/{source}"].value == pytest.approx(1.0, abs=1e-9)
        reference = float(rows[f"prompt_diversity/{source}"][-1])  # the diverse set's value
        assert reference > 1e-4
    clip_ref = _features(world, "clip", world.div)
    from rdbench.metrics.prompt_diversity import prompt_diversity

    ids = [k.split("/")[0] for k in sorted(p.relative_to(world.div).as_posix() for p in
                                           world.div.rglob("*.png"))]  # fmt: skip
    assert float(rows["prompt_diversity/clip"][-1]) == pytest.approx(
        prompt_diversity(clip_ref, ids)[0], rel=1e-3
    )
    assert sorted(result.per_category) == ["blue", "green", "red", "yellow"]
    assert result.per_category["red"]["prompt_diversity/clip"].value == 0.0


def test_table_agrees_with_json(collapsed_run):
    result = Result.load(collapsed_run.out)
    rows = _first_table(collapsed_run.stdout)
    assert set(rows) == set(result.metrics)
    for key, mv in result.metrics.items():
        cells = rows[key]
        assert cells[0] == format_value(mv.value)
        if mv.low is not None:
            assert cells[1:3] == [format_value(mv.low), format_value(mv.high)]
    assert "paired differences" in collapsed_run.stdout


def test_rewards_mean_per_image_and_paired_difference(world, collapsed_run):
    import rdbench.rewards as R

    result = Result.load(collapsed_run.out)
    reward = R.load(
        "aesthetic", device="cpu", weights=str(world.mlp), arch=TINY_ARCH,
        clip_weights=str(world.reward_clip),
    )  # fmt: skip
    gen = R.score_imageset(ImageSet.open(world.col), reward, cache=False, progress=False)
    ref = R.score_imageset(ImageSet.open(world.div), reward, cache=False, progress=False)
    mv = result.metrics["reward/aesthetic"]
    assert mv.value == pytest.approx(gen.scores.mean(), rel=1e-9)
    assert f"reward ids: {gen.reward_id}" in result.notes  # weights digest, arch, dtype
    assert mv.low <= mv.value <= mv.high and mv.n_resamples == 1000
    per_image = {p.key: p.rewards["aesthetic"] for p in result.per_image}
    assert per_image == pytest.approx(gen.as_dict(), rel=1e-9)
    diff = gen.scores - ref.scores  # same keys, same order: both sets are prompt/seed aligned
    paired = [line for line in collapsed_run.stdout.splitlines() if line.startswith("reward/")]
    assert paired[-1].split()[1] == format_value(float(diff.mean()))
    pv = result.paired["reward/aesthetic"]
    assert pv.value == pytest.approx(float(diff.mean()), rel=1e-9) and pv.n == len(diff)
    assert pv.low <= pv.value <= pv.high


def test_per_image_rewards_are_left_out_where_the_result_would_be_too_big(world, monkeypatch):
    import rdbench.submissions

    reward = {
        "rewards": ("aesthetic",),
        "weights": world.weights | {"aesthetic": str(world.mlp)},
        "reward_options": {
            "aesthetic": {"arch": TINY_ARCH, "clip_weights": str(world.reward_clip)}
        },
        "extractors": ("dinov2",),
        "metrics": ("vendi",),
    }
    full = _api(world, world.div, **reward)
    assert len(full.result.per_image) == N_PROMPTS * len(SEEDS)
    monkeypatch.setattr(rdbench.submissions, "MAX_BYTES", len(full.result.to_json()) - 1)
    small = _api(world, world.div, **reward)
    assert small.result.per_image is None
    assert small.result.metrics == full.result.metrics  # nothing else is lost
    assert any("per-image rewards of 24 images left out" in m for m in small.messages)


def test_recall_of_a_diverse_model_beats_the_collapsed_one(world, collapsed_run):
    collapsed = Result.load(collapsed_run.out).metrics["recall/dinov2"].value
    diverse = _api(
        world, world.other, world.div, extractors=("dinov2",), metrics=("precision", "recall")
    ).result
    assert diverse.metrics["recall/dinov2"].value > collapsed
    assert collapsed < 0.5


def test_set_against_itself(world):
    names = ("fid", "precision", "recall", "coverage")
    ev = _api(world, world.div, world.div, extractors=("dinov2",), metrics=names)
    metrics = ev.result.metrics
    assert metrics["fid/dinov2"].value == pytest.approx(0.0, abs=1e-9)
    for name in ("precision", "recall", "coverage"):
        assert metrics[f"{name}/dinov2"].value == 1.0
    assert ev.pairing.n_matched == 24


def _flatten(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}/{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _flatten(value, f"{prefix}/{i}")
    else:
        yield prefix, data


def test_same_result_whatever_the_batch_size(world):
    def run(batch_size: int) -> dict[str, object]:
        ev = _api(
            world, world.col, world.div, extractors=("dinov2", "clip"),
            metrics=("precision", "recall", "scd", "vendi"), bootstrap=3, batch_size=batch_size,
        )  # fmt: skip
        data = json.loads(ev.result.to_json())
        del data["provenance"]["created"]
        return dict(_flatten(data))

    small, large = run(5), run(64)
    assert small.keys() == large.keys()
    for key, value in small.items():
        if "/clip" in key and isinstance(value, float):
            # CLIP's float32 matmuls differ by ~1 ulp between batch sizes (BLAS blocking)
            assert value == pytest.approx(large[key], rel=1e-5, abs=1e-6), key
        else:  # the tiny DINOv2 gives bitwise identical features: identical numbers
            assert value == large[key], key
    assert small["/metrics/scd/dinov2/n_resamples"] == 3
    assert small["/metrics/scd/dinov2/low"] <= small["/metrics/scd/dinov2/high"]


def test_set_without_manifest_has_no_pairs_or_per_prompt(world, tmp_path):
    plain = make_plain_folder(tmp_path / "plain", 10, size=(48, 48))
    ev = _api(
        world, plain, world.div, extractors=("dinov2",), metrics=("precision", "recall", "vendi"),
        quiet=False,
    )  # fmt: skip
    assert ev.pairing.n_matched == 0 and ev.result.setup.n_pairs == 0
    assert not any(k.startswith("prompt_") for k in ev.result.metrics)
    assert ev.result.per_category is None
    assert any("no pairs" in m for m in ev.messages)
    # half-samples of 3 images are too few for the k-NN metrics (density's k = 5 needs 6):
    # their values stay and their intervals are left out with the reason; FID keeps its own
    six = make_plain_folder(tmp_path / "six", 6, size=(48, 48))
    ev = _api(
        world, six, world.div, extractors=("dinov2",), metrics=("fid", "precision"),
        bootstrap=5,
    )  # fmt: skip
    precision = ev.result.metrics["precision/dinov2"]
    assert 0 <= precision.value <= 1 and precision.low is None and precision.n_resamples is None
    assert ev.result.metrics["fid/dinov2"].n_resamples == 5
    assert any("interval of precision left out" in m for m in ev.messages)
    assert any("5 resamples give set-metric intervals that cover less" in m for m in ev.messages)


def test_half_samples_follow_the_prompts_of_each_set(world, tmp_path, monkeypatch):
    """Same prompts: the same halves of both sets; otherwise independent halves, by prompt in
    each set that has prompt ids, by image in a set without a manifest."""
    from rdbench.metrics import bootstrap

    calls = []
    real = bootstrap.half_sample_intervals

    def spy(fn, *arrays, groups=None, independent=False, **kw):
        calls.append((groups, independent))
        return real(fn, *arrays, groups=groups, independent=independent, **kw)

    monkeypatch.setattr(bootstrap, "half_sample_intervals", spy)
    fewer = make_image_set(tmp_path / "fewer", N_PROMPTS - 1, SEEDS, size=(48, 48))
    plain = make_plain_folder(tmp_path / "plain", 12, size=(48, 48))
    cases = [(world.div, world.col, False), (world.div, fewer, True), (plain, world.col, True)]
    for reference, generated, independent in cases:
        calls.clear()
        ev = _api(
            world, generated, reference, extractors=("dinov2",), metrics=("fid",), bootstrap=4
        )
        assert ev.result.metrics["fid/dinov2"].n_resamples == 4
        ((groups, indep),) = calls
        assert indep is independent
        ref_ids, gen_ids = groups
        setup = ev.result.setup
        assert len(gen_ids) == setup.n_images and len(set(gen_ids)) == setup.n_prompts
        if reference == plain:
            assert ref_ids is None  # by image
        else:
            assert len(ref_ids) == setup.n_reference_images and len(set(ref_ids)) == N_PROMPTS


def test_python_m_rdbench_reference_free(world, tmp_path):
    env = {**os.environ, "RDBENCH_HOME": str(tmp_path / "home"), "RDBENCH_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "rdbench", "evaluate", str(world.div), "--extractor", "inception",
        "--weights", f"inception={world.inception}", "--no-cache", "--json", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = Result.from_dict(json.loads(proc.stdout))
    keys = sorted(result.metrics)
    assert keys == ["prompt_diversity/inception", "prompt_vendi/inception", "vendi/inception"]
    assert result.reference_manifest_sha256 is None and result.setup.n_pairs is None
    assert "only reference-free metrics" in result.notes


# ------------------------------------------------------------------------------ bad input


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _assert_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("rdbench: error:")]
    assert len(error_lines) == 1, err
    for fragment in fragments:
        assert fragment in error_lines[0], err


def test_empty_folder_and_missing_folder(world, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    base = ["--weights", f"inception={world.inception}", "--no-cache", "-q"]
    code, _, err = _main(["evaluate", str(tmp_path / "empty"), *base], capsys)
    _assert_error(code, err, "is empty")
    code, _, err = _main(["evaluate", str(tmp_path / "nope"), *base], capsys)
    _assert_error(code, err, "does not exist")
    code, _, err = _main(["evaluate", str(world.div), "-r", str(tmp_path / "empty"), *base], capsys)
    _assert_error(code, err, "is empty")


def test_reference_smaller_than_k_plus_one(world, tmp_path, capsys):
    tiny = make_image_set(tmp_path / "tiny", 1, range(3), size=(48, 48))
    argv = ["evaluate", str(world.div), "-r", str(tiny), "--metrics", "precision,recall"]
    argv += ["--weights", f"inception={world.inception}", "--no-cache", "-q"]
    code, _, err = _main(argv, capsys)
    _assert_error(code, err, "3 sample")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--extractor", "incep"], "unknown feature extractor 'incep'"),
        (["--metrics", "fid,nope"], "unknown metric(s) nope"),
        (["--weights", "nothing=/x"], "weights for ['nothing']"),
        (["--weights", "clip=/nonexistent.safetensors", "--extractor", "clip"], "nonexistent"),
        (["--method", "My Method"], "result labels"),
        (["--confidence", "1.5"], "confidence"),
        (["--reward", "nope"], "reward"),
        (["--device", "tpu"], "device 'tpu' is not a torch device"),
        (["--device", "cuda:99"], "device 'cuda:99' is not usable on this machine"),
    ],
)
def test_bad_options(world, capsys, extra, fragment):
    argv = ["evaluate", str(world.div), "--weights", f"inception={world.inception}", "-q"]
    code, _, err = _main([*argv, *extra], capsys)
    _assert_error(code, err, fragment)


def test_per_prompt_without_manifest_is_refused(world, tmp_path, capsys):
    plain = make_plain_folder(tmp_path / "plain", 4, size=(48, 48))
    argv = ["evaluate", str(plain), "--per-prompt", "--weights", f"inception={world.inception}"]
    code, _, err = _main([*argv, "--no-cache", "-q"], capsys)
    _assert_error(code, err, "manifest")


def test_on_error_skip_lists_the_corrupt_file(world, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(world.div, broken)
    (broken / "p0001" / "2.png").write_bytes(b"this is not a png")
    argv = ["evaluate", str(broken), "--weights", f"inception={world.inception}", "--no-cache"]
    code, _, err = _main([*argv, "--metrics", "vendi"], capsys)
    _assert_error(code, err, "p0001/2.png")
    out_file = tmp_path / "r.json"
    code, out, err = _main(
        [*argv, "--metrics", "vendi", "--on-error", "skip", "--json", "--out", str(out_file)],
        capsys,
    )
    assert code == 0, err
    assert "skipped 1 generated file(s): 'p0001/2.png'" in err
    result = Result.from_dict(json.loads(out))
    assert result.setup.n_images == 23
    assert [(f.image_set, f.key) for f in result.skipped] == [("generated", "p0001/2.png")]
    assert "not a readable image" in result.skipped[0].reason
    assert out_file.read_text() == out  # --json prints exactly what --out holds
    # with a reference, the pair count leaves out the skipped image (24 matched, 23 usable)
    code, out, err = _main(
        [*argv, "--metrics", "vendi", "--on-error", "skip", "--reference", str(world.other)]
        + ["--json", "-q"],
        capsys,
    )
    assert code == 0, err
    assert Result.from_dict(json.loads(out)).setup.n_pairs == 23


def test_api_rejects_unknown_options(world):
    with pytest.raises(RdbenchError, match="unknown option"):
        rdbench.evaluate(world.div, extractor="inception")
    with pytest.raises(RdbenchError, match="on_error"):
        rdbench.EvaluateOptions(on_error="ignore")
    with pytest.raises(RdbenchError, match="0 \\(no interval\\) or >= 2"):
        rdbench.EvaluateOptions(bootstrap=1)


def test_a_skipped_file_with_an_undecodable_name_keeps_the_result(world, tmp_path):
    """The finished evaluation was lost: the result refused the non-UTF-8 name."""
    folder = make_plain_folder(tmp_path / "u", 6, size=(48, 48))
    (folder / os.fsdecode(b"bad\xff.png")).write_bytes(b"not an image")
    ev = _api(world, folder, extractors=("dinov2",), metrics=("vendi",), on_error="skip")
    assert [f.key for f in ev.result.skipped] == ["bad\\udcff.png"]
    assert Result.from_dict(json.loads(ev.result.to_json())) == ev.result
