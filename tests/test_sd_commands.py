"""Recipes and the train / generate / reproduce commands on a tiny SD pipeline, end to end.

The model folder, the reward (HPSv2 checkpoint layout, tiny open_clip architecture) and the
Inception file are tiny random-weight files in their real formats, loaded by the real loaders.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from peft import get_peft_model_state_dict
from safetensors.torch import load_file
from tiny_models import make_open_clip
from tiny_rewards import TINY_ARCH, make_hpsv2
from tiny_sd import make_tiny_sd

from baselines.core.lora import lora_layers
from baselines.sd.commands import generate_command, sd, train_command
from baselines.sd.recipes import RECIPES_DIR, load_recipe, parse_override
from baselines.sd.reproduce import jobs, reproduce
from baselines.sd.train import fresh_lora, pipeline_for, read_curve, train
from rdbench.errors import RdbenchError
from rdbench.evaluate import run_evaluation
from rdbench.prompts.plan import read_plan
from rdbench.results import Result

TESTS = Path(__file__).resolve().parent
PROMPTS = ["a red bus", "the cat on a mat", "an apple"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state(fresh_accelerate_state):
    """``train`` builds an Accelerator (see conftest)."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd_files")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return {
        "model": make_tiny_sd(root / "model"),
        "hpsv2": make_hpsv2(root / "hps"),
        "clip": make_open_clip(root / "clip"),
        "prompts": root / "prompts.txt",
    }


@pytest.fixture
def recipe_file(files, tmp_path):
    text = f"""
name = "tiny"
[model]
name = "tiny/sd"
path = "{files["model"]}"
device = "cpu"
[sampling]
steps = 3
guidance_scale = 2.0
[lora]
rank = 4
[train]
reward = "hpsv2"
reward_weights = "{files["hpsv2"]}"
reward_options = {{arch = "{TINY_ARCH}"}}
steps = 3
batch_size = 2
grad_accum = 1
lr = 1e-2
checkpoint_every = 1
[train.prompts]
suite = "file"
path = "{files["prompts"]}"
[eval]
images_per_prompt = 2
batch_size = 4
extractors = ["clip"]
extractor_options = {{clip = {{model = "{files["clip"][0]}", pretrained = "random"}}}}
metrics = ["fid", "precision", "recall"]
[eval.prompts]
suite = "file"
path = "{files["prompts"]}"
[sweep]
kl_lambda = [0]
lora_scale = [0.5]
aig = ["power:2"]
"""
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def pixels(path: Path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path))


def invoke(command, args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


# --- recipes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES_DIR.glob("*.toml")))
def test_shipped_recipes_carry_the_reference_settings(name):
    r = load_recipe(name)
    xl = name.startswith("sdxl")
    assert r.model.name == ("sdxl-base-1.0" if xl else "sd-v1-4")
    assert (r.sampling.scheduler, r.sampling.guidance_scale) == (
        ("euler", 5.0) if xl else ("ddim", 7.5)
    )
    assert r.sampling.steps == 25 and r.sampling.eta == 0 and r.lora.rank == 32
    assert r.train.batch_size * r.train.grad_accum == (32 if xl else 64)
    assert r.train.weight_decay == (5e-4 if xl else 5e-3)
    assert (r.train.lr, r.train.grad_clip, r.train.k) == (2.5e-4, 10.0, 1)
    assert r.train.prompts.suite == "pickapic" and r.eval.prompts.suite == "partiprompts"
    # REFERENCE section 1: lambda in {0, 0.1, 0.5, 1, 2, 5, 10, 20, 50}
    assert r.sweep.kl_lambda == [0, 0.1, 0.5, 1, 2, 5, 10, 20, 50]
    assert r.sweep.lora_scale == pytest.approx([i / 10 for i in range(1, 10)])
    assert {f"power:{p}" for p in (1, 2, 3, 4)} <= set(r.sweep.aig)
    assert any(s.startswith("step:") for s in r.sweep.aig)
    # 9 trainings (lambda 0 included); 1 + 9 + 9 + 7 image sets
    assert len(r.kl_lambdas()) == 9 and len(jobs(r)) == 26


def test_recipe_errors_name_the_key(tmp_path, recipe_file):
    with pytest.raises(RdbenchError, match="train.stepz"):
        load_recipe(recipe_file, {"train.stepz": 3})
    with pytest.raises(RdbenchError, match="sampling.steps"):
        load_recipe(recipe_file, {"sampling.steps": 0})
    with pytest.raises(RdbenchError, match="sweep.aig"):
        load_recipe(recipe_file, {"sweep.aig": ["cubic:2"]})
    with pytest.raises(RdbenchError, match="shipped recipes: sd14-hpsv2"):
        load_recipe("sd15-nothing")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(RdbenchError, match="not valid TOML"):
        load_recipe(bad)
    assert parse_override("train.steps=2") == ("train.steps", 2)
    assert parse_override("model.path=/x/y") == ("model.path", "/x/y")
    assert parse_override('sweep.aig=["power:2"]') == ("sweep.aig", ["power:2"])
    with pytest.raises(RdbenchError, match="section.key=value"):
        parse_override("steps")


def test_offline_without_the_model_fails_with_the_repo_and_env_var(tmp_path):
    result = CliRunner().invoke(
        train_command, ["--recipe", "sd14-pickscore", "--out", str(tmp_path / "run")]
    )
    assert isinstance(result.exception, RdbenchError)
    assert "CompVis/stable-diffusion-v1-4" in str(result.exception)
    assert "RDBENCH_FILE_SD_V1_4" in str(result.exception)


# --- train --------------------------------------------------------------------------------


def test_train_resumes_exactly_and_logs_the_reward_curve(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file)
    whole = train(recipe, tmp_path / "whole", progress=False)
    assert whole.steps_run == 3
    run = tmp_path / "resumed"
    invoke(
        train_command,
        ["--recipe", recipe_file, "--out", run, "--set", "train.steps=2", "--no-progress"],
    )
    assert (run / "checkpoints" / "latest").read_text() == "step-000002"
    out = invoke(train_command, ["--recipe", recipe_file, "--out", run, "--no-progress"])
    assert "(1 steps run)" in out.output
    a, b = load_file(whole.lora), load_file(run / "lora.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # training moved B off 0
    rows = read_curve(run / "curve.csv")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # the start once, also across the resume
    start = [rows[0][k] for k in ("reward", "kl", "loss", "grad_norm")]
    assert rows[0]["seconds"] == 0 and torch.isnan(torch.tensor(start)).all()
    assert all(torch.isfinite(torch.tensor([r["reward"], r["loss"]])).all() for r in rows[1:])
    assert [r["reward"] for r in rows] == pytest.approx(
        [r["reward"] for r in read_curve(whole.curve)], abs=1e-5, nan_ok=True
    )
    meta = json.loads((run / "lora.safetensors.json").read_text())
    assert meta["step"] == 3 and meta["recipe"]["train"]["reward"] == "hpsv2"
    again = invoke(train_command, ["--recipe", recipe_file, "--out", run, "--no-progress"])
    assert "(0 steps run)" in again.output
    # a finished run hands its LoRA to the caller's pipeline too (no training, no stale adapter)
    pipe = pipeline_for(recipe)
    assert train(recipe, run, pipe=pipe, progress=False).steps_run == 0
    got = get_peft_model_state_dict(pipe.unet)
    assert got.keys() == b.keys() and all(torch.equal(got[k].cpu(), b[k]) for k in b)
    # another recipe, or fewer steps, never reuses (or relabels) this run's LoRA
    with pytest.raises(RdbenchError, match=r"draft.kl_lambda: 0.0 -> 5.0.*new folder"):
        train(recipe, run, kl_lambda=5.0, progress=False)
    with pytest.raises(RdbenchError, match=r"recipe.train.lr: 0.01 -> 0.02"):
        train(load_recipe(recipe_file, {"train.lr": 2e-2}), run, progress=False)
    with pytest.raises(RdbenchError, match="trained to step 3, beyond .*train.steps=2"):
        train(load_recipe(recipe_file, {"train.steps": 2}), run, progress=False)
    assert load_file(run / "lora.safetensors").keys() == b.keys()
    assert json.loads((run / "lora.safetensors.json").read_text()) == meta


@pytest.mark.parametrize("init", ["gaussian", "kaiming"])
def test_lora_a_starts_as_the_recipe_says_and_b_at_zero(recipe_file, init):
    recipe = load_recipe(recipe_file, {"lora.init": init})
    pipe = pipeline_for(recipe)
    fresh_lora(pipe, recipe, seed=0)
    layers = lora_layers(pipe.unet)
    assert all(not m.lora_B["default"].weight.any() for m in layers)
    a = [m.lora_A["default"].weight for m in layers]
    if init == "gaussian":  # N(0, 1/r^2), r = 4 (REFERENCE section 4)
        std = torch.cat([w.flatten() for w in a]).std().item()
        assert std == pytest.approx(1 / recipe.lora.rank, rel=0.1)
    else:  # peft's Kaiming-uniform: |A| <= 1/sqrt(fan_in) in every layer
        assert all(w.abs().max() <= w.shape[1] ** -0.5 for w in a)


def test_mixed_precision_defaults_to_the_model_dtype(recipe_file):
    assert load_recipe("sd14-pickscore").mixed_precision() == "bf16"  # dtype = "bfloat16"
    assert load_recipe(recipe_file).mixed_precision() == "no"  # float32
    assert load_recipe(recipe_file, {"train.mixed_precision": "fp16"}).mixed_precision() == "fp16"
    with pytest.raises(RdbenchError, match="train.mixed_precision"):
        load_recipe(recipe_file, {"train.mixed_precision": "fp8"})


def test_train_runs_through_an_accelerator(recipe_file, tmp_path, monkeypatch):
    import baselines.sd.train as sd_train

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["accelerator"])
        return sd_train.train_draft.__wrapped__(*args, **kwargs)

    spy.__wrapped__ = sd_train.train_draft
    monkeypatch.setattr(sd_train, "train_draft", spy)
    recipe = load_recipe(recipe_file, {"train.mixed_precision": "no", "train.steps": 2})
    result = train(recipe, tmp_path / "run", progress=False)
    (acc,) = seen
    assert acc.num_processes == 1 and acc.mixed_precision == "no"
    weights = load_file(result.lora)
    assert any(weights[k].abs().sum() > 0 for k in weights if "lora_B" in k)
    assert [r["step"] for r in read_curve(result.curve)] == [0, 1, 2]


@pytest.mark.parametrize(
    "extra",
    [{}, {"train.lv": 1, "sampling.eta": 0.5}],
    ids=["draft-k", "draft-lv-with-step-noise"],
)
def test_train_shards_over_two_processes_like_one_big_batch(recipe_file, tmp_path, extra):
    """2 gloo processes x batch 1 == 1 process x batch 2: same draws, gradients averaged (also
    DRaFT-LV's re-noise and DDIM's per-step noise, drawn for the world batch and sliced)."""
    one = train(
        load_recipe(recipe_file, {"train.steps": 2, **extra}), tmp_path / "one", progress=False
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    worker = tmp_path / "worker.py"  # the real CLI, with the tiny reward arch registered
    worker.write_text(
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        f"from tiny_rewards import register_tiny_arch; register_tiny_arch({str(tmp_path)!r})\n"
        "from baselines.cli import main; main()\n"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(worker), "train", "--recipe", str(recipe_file), "--no-progress"]
    cmd += ["--out", str(tmp_path / "two"), "--set", "train.steps=2", "--set", "train.batch_size=1"]
    cmd += [arg for key, value in extra.items() for arg in ("--set", f"{key}={value}")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(one.lora), load_file(tmp_path / "two" / "lora.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    rows = read_curve(tmp_path / "two" / "curve.csv")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["reward"] for r in rows] == pytest.approx(
        [r["reward"] for r in read_curve(one.curve)], abs=1e-5, nan_ok=True
    )
    assert (tmp_path / "two" / "checkpoints" / "latest").read_text() == "step-000002"


# --- generate ------------------------------------------------------------------------------


def test_generate_fills_an_image_set_that_rdbench_evaluates(recipe_file, files, tmp_path):
    from rdbench.prompts.plan import make_plan, write_plan

    recipe = load_recipe(recipe_file)
    plan = tmp_path / "plan.jsonl"
    write_plan(make_plan(recipe.eval.prompts.load(), images_per_prompt=2), plan)
    lines = read_plan(plan)
    base = tmp_path / "base"
    args = ["generate", "--recipe", recipe_file, "--plan", plan, "--no-progress"]
    out = invoke(sd, [*args, "--method", "base", "--out", base])
    assert "6 images written, 0 already there" in out.output
    assert read_plan(base / "manifest.jsonl") == lines
    pngs = {line["path"]: (base / line["path"]).read_bytes() for line in lines}
    # determinism for a seed, whatever the batch size; resumable (one image missing)
    again = tmp_path / "again"
    invoke(sd, [*args, "--method", "base", "--out", again, "--batch-size", "5"])
    (again / lines[0]["path"]).unlink()
    out = invoke(sd, [*args, "--method", "base", "--out", again, "--batch-size", "1"])
    assert "1 images written, 5 already there" in out.output
    # batch sizes 4 vs 5 and 1: the same images up to float rounding, so at most 1/255 in a PNG
    for k in pngs:
        diff = pixels(again / k).astype(int) - pixels(base / k).astype(int)
        assert abs(diff).max() <= 1, k
    with pytest.raises(RdbenchError, match="needs LoRA"):
        invoke(generate_command, [*args[1:], "--method", "draft", "--out", tmp_path / "d"])
    # `rdbench evaluate DIR --reference BASE` on the generated set
    ev = run_evaluation(
        base,
        reference=again,
        extractors=("clip",),
        weights={"clip": str(files["clip"][1])},
        extractor_options={"clip": {"model": files["clip"][0], "pretrained": "random"}},
        metrics=("fid",),
        progress=False,
        quiet=True,
    )
    assert ev.result.metrics["fid/clip"].value == pytest.approx(0.0, abs=1e-6)
    assert ev.pairing.n_matched == 6 and ev.result.setup.n_prompts == 3


# --- reproduce -----------------------------------------------------------------------------


def test_reproduce_chains_plan_train_generate_evaluate(recipe_file, files, tmp_path):
    recipe = load_recipe(recipe_file)
    logs: list[str] = []
    options = {
        "weights": {"clip": str(files["clip"][1]), "hpsv2": str(files["hpsv2"])},
        "quiet": True,
    }
    paths = reproduce(recipe, tmp_path, evaluate_options=options, progress=False, log=logs.append)
    slugs = ["base", "draft", "lora-scale-0.5", "aig-power-2"]
    assert [p.stem for p in paths] == slugs
    results = {p.stem: Result.load(p) for p in paths}
    assert results["draft"].method.name == "draft" and results["draft"].method.regularizer is None
    assert (results["aig-power-2"].method.regularizer, results["aig-power-2"].method.strength) == (
        "aig-power",
        2.0,
    )
    assert results["lora-scale-0.5"].method.strength == 0.5
    assert results["base"].metrics["fid/clip"].value == pytest.approx(0.0, abs=1e-6)
    for r in results.values():
        assert r.setup.n_images == 6 and r.setup.n_pairs == 6
        assert "reward/hpsv2" in r.metrics
    # paired sets: every method's images share (prompt_id, seed) and the plan's manifest
    plan = read_plan(tmp_path / "plan.jsonl")
    for slug in slugs:
        assert read_plan(tmp_path / "images" / slug / "manifest.jsonl") == plan
    with open(tmp_path / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == slugs and "fid/clip" in rows[0]
    # a rerun trains nothing and generates nothing
    logs.clear()
    reproduce(recipe, tmp_path, evaluate=False, progress=False, log=logs.append)
    assert [line for line in logs if line.startswith("train")] == [
        f"train kl-0: 0 steps run -> {tmp_path / 'train' / 'kl-0' / 'lora.safetensors'}"
    ]
    # retrained (longer): the draft set's LoRA changed, so its images are not reused
    longer = load_recipe(recipe_file, {"train.steps": 4})
    with pytest.raises(RdbenchError, match=r"images/draft holds images made with other .*lora"):
        reproduce(longer, tmp_path, evaluate=False, progress=False)
    assert all("0 new" in line for line in logs if line.startswith("generate"))
