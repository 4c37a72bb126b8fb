"""DRaFT, KL, LoRA scaling and AIG on a tiny Stable Diffusion pipeline (diffusers + peft).

The pipeline is built from configs with seeded random weights, saved with ``save_pretrained``
and loaded through the real loader (``rdbench.hub.resolve_folder`` via ``RDBENCH_FILE_*``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from tiny_sd import make_tiny_sd

from baselines.core.draft import DraftConfig, draft_loss, train_draft
from baselines.core.guidance import MIXING, aig_predictor, base_and_finetuned
from baselines.core.lora import lora_layers, lora_parameters, save_lora
from baselines.core.regularizers import KLPredictor
from baselines.core.sampling import concat_cond, predictor, sample
from baselines.core.schedules import schedule_values
from baselines.sd.bench import op_census
from baselines.sd.generate import attach_lora, generate, parse_method, sample_images
from baselines.sd.pipeline import load_pipeline
from baselines.sd.recipes import load_recipe
from rdbench.errors import RdbenchError
from rdbench.prompts.parse import Prompt
from rdbench.prompts.plan import make_plan

STEPS = 3
PROMPTS = ["a red bus", "the cat on a mat"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Two cores shared with other test runs: one intra-op thread avoids spin contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


def load(folder, monkeypatch=None, lora: bool = True, guidance: float = 3.0):
    pipe = load_pipeline("tiny/sd", folder, device="cpu", guidance_scale=guidance)
    if lora:
        pipe.add_lora(rank=4)
    return pipe


def perturb(pipe, scale: float = 0.2, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(pipe.unet):
            p.add_(scale * torch.randn(p.shape, generator=g))


def brightness(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    assert len(prompts) == images.shape[0]
    return images.mean(dim=(1, 2, 3))


def batches(pipe, n: int = 2):
    return lambda g: (pipe.encode(PROMPTS[:n]), torch.randn(n, *pipe.latent_shape, generator=g))


def test_model_resolves_through_the_weights_entry_and_offline_error_names_it(
    sd_folder, monkeypatch
):
    with pytest.raises(
        RdbenchError, match="CompVis/stable-diffusion-v1-4.*\n.*RDBENCH_FILE_SD_V1_4"
    ):
        load_pipeline("sd-v1-4", device="cpu")
    monkeypatch.setenv("RDBENCH_FILE_SD_V1_4", str(sd_folder))
    pipe = load_pipeline("sd-v1-4", device="cpu")
    assert pipe.source == str(sd_folder) and pipe.latent_shape == (4, 8, 8)
    assert pipe.image_size == 16 and not pipe.xl
    with pytest.raises(RdbenchError, match="missing"):
        load_pipeline("tiny/sd", sd_folder / "unet", device="cpu")


def test_only_lora_parameters_receive_gradients(sd_folder):
    pipe = load(sd_folder)
    cond, noise = batches(pipe)(torch.Generator().manual_seed(0))
    loss, _ = draft_loss(
        pipe.unet,
        pipe.denoiser(),
        pipe.scheduler,
        pipe.latent_reward(brightness),
        cond,
        noise,
        DraftConfig(num_inference_steps=STEPS, k=1),
    )
    loss.backward()
    for module in (pipe.vae, *pipe.text_encoders):
        assert all(p.grad is None for p in module.parameters())
    for name, p in pipe.unet.named_parameters():
        assert (p.grad is not None) == ("lora_B" in name or "lora_A" in name), name
    assert any(p.grad.abs().sum() > 0 for n, p in pipe.unet.named_parameters() if "lora_B" in n)


def test_truncated_backprop_reaches_only_the_last_k_steps(sd_folder):
    pipe = load(sd_folder)
    perturb(pipe)
    den, cond = pipe.denoiser(), pipe.encode(PROMPTS)
    reached: list[int] = []

    def predict(x, t, i):
        eps = den(x, t, cond)
        if eps.requires_grad:
            eps.register_hook(lambda g, i=i: reached.append(i))
        return eps

    x0 = sample(predict, pipe.scheduler, pipe.initial_noise([0, 1]), num_steps=4, grad_steps=2)
    brightness(pipe.decode(x0), PROMPTS).sum().backward()
    assert sorted(reached) == [2, 3]


def test_draft_lv_runs_and_its_gradient_differs_from_draft_1(sd_folder):
    pipe = load(sd_folder)
    perturb(pipe)
    cond, noise = batches(pipe)(torch.Generator().manual_seed(0))
    grads = {}
    for cfg in (
        DraftConfig(num_inference_steps=STEPS, k=1),
        DraftConfig(num_inference_steps=STEPS, lv=2),
    ):
        pipe.unet.zero_grad(set_to_none=True)
        loss, info = draft_loss(
            pipe.unet,
            pipe.denoiser(),
            pipe.scheduler,
            pipe.latent_reward(brightness),
            cond,
            noise,
            cfg,
            torch.Generator().manual_seed(3),
        )
        loss.backward()
        grads[cfg.method] = torch.cat([p.grad.flatten() for p in lora_parameters(pipe.unet)])
    assert torch.isfinite(grads["draft-lv2"]).all() and grads["draft-lv2"].abs().sum() > 0
    assert not torch.allclose(grads["draft-k1"], grads["draft-lv2"])


def test_kl_is_zero_at_init_and_grows_as_the_adapter_moves(sd_folder):
    pipe = load(sd_folder)
    den, cond = pipe.denoiser(), pipe.encode(PROMPTS)
    values = []
    for scale in (0.0, 0.05, 0.3):
        perturb(pipe, scale) if scale else None
        kl = KLPredictor(pipe.unet, den, cond)
        sample(kl, pipe.scheduler, pipe.initial_noise([0, 1]), num_steps=STEPS, grad_steps=1)
        values.append(float(kl.penalty().detach()))
    assert values[0] == 0.0
    assert 0.0 < values[1] < values[2]


def test_a_few_draft_steps_raise_a_differentiable_reward(sd_folder):
    pipe = load(sd_folder, guidance=1.0)
    cond, noise = pipe.encode(PROMPTS), pipe.initial_noise([10, 11])

    def reward_now() -> float:
        with torch.no_grad():
            x0 = sample(predictor(pipe.denoiser(), cond), pipe.scheduler, noise, num_steps=STEPS)
            return float(brightness(pipe.decode(x0), PROMPTS).mean())

    before = reward_now()
    cfg = DraftConfig(steps=4, lr=3e-2, weight_decay=0.0, num_inference_steps=STEPS, k=1)
    history = train_draft(
        pipe.unet,
        pipe.denoiser(),
        pipe.scheduler,
        pipe.latent_reward(brightness),
        batches(pipe),
        cfg,
        progress=False,
    )
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert reward_now() > before + 1e-3


def images(pipe, spec: str, seeds=(0, 1)) -> torch.Tensor:
    return sample_images(pipe, parse_method(spec), PROMPTS, list(seeds), num_steps=STEPS)


def test_scale_0_and_g_0_are_base_bit_for_bit_and_scale_1_g_1_are_finetuned(sd_folder):
    plain = images(load(sd_folder, lora=False), "base")  # no LoRA layers at all
    pipe = load(sd_folder)
    perturb(pipe)
    base = images(pipe, "base")
    draft = images(pipe, "draft")
    assert torch.equal(base, plain)
    assert not torch.allclose(base, draft, atol=1e-3)
    assert torch.equal(images(pipe, "lora-scale:0"), base)
    assert torch.equal(images(pipe, "aig:base"), base)
    assert torch.equal(images(pipe, "aig:step:1.0"), base)  # g_i = 0 at every step i < T
    assert torch.equal(images(pipe, "lora-scale:1"), draft)
    assert torch.equal(images(pipe, "aig:draft"), draft)
    assert torch.equal(images(pipe, "aig:step:0"), draft)
    half = images(pipe, "lora-scale:0.5")
    assert not torch.allclose(half, base, atol=1e-3) and not torch.allclose(half, draft, atol=1e-3)


def test_aig_single_mixed_adapter_forward_matches_two_passes(sd_folder):
    pipe = load(sd_folder)
    perturb(pipe)
    cond, noise = pipe.encode(PROMPTS), pipe.initial_noise([3, 4])
    out, rows = {}, {}
    for mixing in MIXING:
        seen: list[int] = []
        hook = pipe.unet.register_forward_pre_hook(
            lambda m, args, seen=seen: seen.append(len(args[0]))
        )
        predict = aig_predictor(pipe.unet, pipe.denoiser(), cond, "power:2", 4, mixing=mixing)
        with torch.no_grad():
            out[mixing] = sample(predict, pipe.scheduler, noise, num_steps=4)
        hook.remove()
        rows[mixing] = seen
    # step 0 has g = 0 (base only); steps 1-3 mix: one UNet call on [x; x] x CFG = 8 rows
    assert rows["rows"] == rows["peft"] == [4, 8, 8, 8]
    assert rows["two-pass"] == [4, 4, 4, 4, 4, 4, 4]
    assert torch.allclose(out["rows"], out["two-pass"], atol=1e-5)
    assert torch.allclose(out["peft"], out["two-pass"], atol=1e-5)
    with torch.no_grad():
        base = sample(predictor(pipe.denoiser(), cond), pipe.scheduler, noise, num_steps=4)
    assert not torch.allclose(out["rows"], base, atol=1e-3)


def test_row_mixing_adds_no_indexing_or_host_tensors_to_the_unet_forward(sd_folder):
    """What keeps a GPU busy: the mixed forward is the plain forward on 2b rows plus O(1) ops.

    peft's ``adapter_names`` path builds index tensors from Python lists in every LoRA layer
    (``lift_fresh``; a blocking host-to-device copy on CUDA) and gathers/scatters rows.
    """
    pipe = load(sd_folder)
    perturb(pipe)
    cond, x, t = pipe.encode(PROMPTS), pipe.initial_noise([3, 4]), torch.tensor(500)
    den, n_lora = pipe.denoiser(), len(lora_layers(pipe.unet))
    with torch.no_grad():
        plain = op_census(lambda: den(torch.cat([x, x]), t, concat_cond(cond, cond)))
        rows = op_census(lambda: base_and_finetuned(pipe.unet, den, x, t, cond))
        peft = op_census(lambda: base_and_finetuned(pipe.unet, den, x, t, cond, mixing="peft"))
    indexing = ("aten.lift_fresh", "aten.index.", "aten.index_put")
    assert not any(op.startswith(indexing) for op in rows)
    assert sum(rows.values()) - sum(plain.values()) <= 10  # one scale tensor, two slices
    assert sum(v for op, v in peft.items() if op.startswith("aten.lift_fresh")) >= 2 * n_lora


@pytest.mark.parametrize("recipe", ["sd14-pickscore", "sdxl-hpsv2"])
def test_recipe_schedules_are_monotone_and_bounded(recipe):
    for spec in load_recipe(recipe).sweep.aig:
        g = schedule_values(spec, 25)
        assert all(0.0 <= v <= 1.0 for v in g), spec
        assert all(a <= b for a, b in zip(g, g[1:], strict=False)), spec


def test_lora_save_load_generate_round_trip(sd_folder, tmp_path):
    pipe = load(sd_folder)
    perturb(pipe, seed=7)
    expected = images(pipe, "aig:power:2", seeds=(5, 6))
    path = save_lora(
        pipe.unet, tmp_path / "lora.safetensors", {"recipe": {"lora": {"rank": 4, "alpha": None}}}
    )
    fresh = load(sd_folder, lora=False)
    recipe = attach_lora(fresh, path)
    assert recipe["recipe"]["lora"]["rank"] == 4
    assert torch.equal(images(fresh, "aig:power:2", seeds=(5, 6)), expected)
    with pytest.raises(RdbenchError, match="not found"):
        attach_lora(load(sd_folder, lora=False), tmp_path / "missing.safetensors")


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_per_seed_noise_makes_images_independent_of_the_batch(sd_folder, scheduler):
    """Same seed, same image to float rounding whatever the batch (batched kernels round
    differently, for both samplers: about 1e-6 here); the same batch repeats bit for bit."""
    pipe = load_pipeline(
        "tiny/sd", sd_folder, device="cpu", guidance_scale=3.0, scheduler=scheduler
    )
    pipe.add_lora(rank=4)
    perturb(pipe)
    both = images(pipe, "aig:linear", seeds=(0, 1))
    one = sample_images(pipe, parse_method("aig:linear"), PROMPTS[1:], [1], num_steps=STEPS)
    assert torch.allclose(both[1:], one, rtol=0, atol=1e-5)
    assert torch.equal(images(pipe, "aig:linear", seeds=(0, 1)), both)


def test_generate_resumes_only_the_same_settings(sd_folder, tmp_path):
    pipe = load(sd_folder)
    perturb(pipe)
    lora = save_lora(pipe.unet, tmp_path / "lora.safetensors", {"recipe": {"lora": {"rank": 4}}})
    plan = make_plan(
        [Prompt(f"p{i}", text, "tiny", i) for i, text in enumerate(PROMPTS)], images_per_prompt=1
    )
    base = tmp_path / "base"
    run = {"num_steps": STEPS, "progress": False}
    assert generate(pipe, plan, base, "base", **run).written == 2
    first = (base / plan[0]["path"]).read_bytes()
    with pytest.raises(RdbenchError, match="method: 'base' -> 'draft'.*another folder, or delete"):
        generate(pipe, plan, base, "draft", lora=lora, **run)
    with pytest.raises(RdbenchError, match="num_steps: 3 -> 2"):
        generate(pipe, plan, base, "base", num_steps=2, progress=False)
    assert json.loads((base / "generation.json").read_text())["method"] == "base"
    (base / plan[1]["path"]).unlink()
    report = generate(pipe, plan, base, "base", batch_size=1, **run)  # same settings: resumes
    assert (report.written, report.skipped) == (1, 1)
    assert (base / plan[0]["path"]).read_bytes() == first
    draft = tmp_path / "draft"
    generate(pipe, plan, draft, "draft", lora=lora, **run)
    perturb(pipe, seed=9)  # retrained: same path, other weights
    save_lora(pipe.unet, lora, {"recipe": {"lora": {"rank": 4}}})
    with pytest.raises(RdbenchError, match="lora_sha256"):
        generate(pipe, plan, draft, "draft", lora=lora, **run)
    (base / "generation.json").unlink()
    with pytest.raises(RdbenchError, match="no generation.json"):
        generate(pipe, plan, base, "base", **run)


def test_missing_or_truncated_lora_is_one_error(sd_folder, tmp_path):
    pipe = load(sd_folder)
    plan = make_plan([Prompt("p0", PROMPTS[0], "tiny", 0)], images_per_prompt=1)
    with pytest.raises(RdbenchError, match="not found"):
        generate(pipe, plan, tmp_path / "a", "draft", lora=tmp_path / "missing.safetensors")
    lora = save_lora(pipe.unet, tmp_path / "lora.safetensors", {"recipe": {"lora": {"rank": 4}}})
    lora.write_bytes(lora.read_bytes()[:-100])
    with pytest.raises(RdbenchError, match="unreadable.*truncated"):
        generate(pipe, plan, tmp_path / "b", "draft", lora=lora, progress=False)
    with pytest.raises(RdbenchError, match="unreadable"):
        attach_lora(load(sd_folder, lora=False), lora)


def test_bad_methods_are_refused(sd_folder):
    for spec in ("lora-scale:2", "lora-scale:x", "aig", "aig:cubic", "draft:1", "best"):
        with pytest.raises(RdbenchError):
            parse_method(spec)
    with pytest.raises(RdbenchError, match="needs LoRA"):
        images(load(sd_folder, lora=False), "draft")


def test_sdxl_conditioning_cfg_and_aig_on_a_tiny_sdxl(tmp_path):
    folder = make_tiny_sd(tmp_path / "xl", xl=True)
    pipe = load_pipeline("tiny/sdxl", folder, device="cpu", scheduler="euler", guidance_scale=2.0)
    assert pipe.xl and type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    cond = pipe.encode(PROMPTS)
    assert cond["embeds"].shape == (2, 77, 64) and cond["pooled"].shape == (2, 32)
    assert cond["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * 2
    assert torch.equal(pipe.uncond(2)["pooled"], torch.zeros(2, 32))  # zeros, as SDXL forces
    pipe.add_lora(rank=4)
    perturb(pipe)
    noise = pipe.initial_noise([0, 1])
    out = {}
    for mixing in MIXING:
        predict = aig_predictor(pipe.unet, pipe.denoiser(), cond, "power:2", 3, mixing=mixing)
        with torch.no_grad():
            out[mixing] = sample(predict, pipe.scheduler, noise, num_steps=3)
    assert torch.allclose(out["rows"], out["two-pass"], atol=1e-5)
    assert torch.allclose(out["peft"], out["two-pass"], atol=1e-5)
    loss, _ = draft_loss(
        pipe.unet,
        pipe.denoiser(),
        pipe.scheduler,
        pipe.latent_reward(brightness),
        cond,
        noise,
        DraftConfig(num_inference_steps=3, k=1),
    )
    loss.backward()
    assert any(p.grad.abs().sum() > 0 for p in lora_parameters(pipe.unet))


def test_sdxl_vae_stays_float32_under_float16_as_diffusers_upcasts_it(tmp_path, sd_folder):
    folder = make_tiny_sd(tmp_path / "xl", xl=True)
    xl = load_pipeline("tiny/sdxl", folder, device="cpu", dtype="float16")
    assert xl.vae.config.force_upcast  # the SDXL VAE config's own flag
    assert next(xl.vae.parameters()).dtype == torch.float32
    assert next(xl.unet.parameters()).dtype == torch.float16
    # SD 1.x decodes in fp16 as diffusers' SD pipeline does; bf16 needs no upcast
    sd = load_pipeline("tiny/sd", sd_folder, device="cpu", dtype="float16")
    assert next(sd.vae.parameters()).dtype == torch.float16
    bf = load_pipeline("tiny/sdxl", folder, device="cpu", dtype="bfloat16")
    assert next(bf.vae.parameters()).dtype == torch.bfloat16


def test_missing_unet_weights_name_the_expected_file(sd_folder, tmp_path):
    import shutil

    folder = Path(shutil.copytree(sd_folder, tmp_path / "model"))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(RdbenchError, match=r"\['unet/diffusion_pytorch_model.safetensors'\]"):
        load_pipeline("tiny/sd", folder, device="cpu")


@pytest.mark.parametrize(
    ("xl", "scheduler"), [(False, "ddim"), (False, "euler"), (True, "ddim"), (True, "euler")]
)
def test_sampling_matches_diffusers_own_pipelines(tmp_path, sd_folder, xl, scheduler):
    """Parity with diffusers' StableDiffusion(XL)Pipeline on the same modules, noise and
    prompts, float32: text conditioning (SDXL: both encoders, pooled embeds, time ids), the
    unconditional half, CFG, scheduler scaling, VAE decode; base, finetuned and LoRA-scaled."""
    folder = make_tiny_sd(tmp_path / "xl", xl=True) if xl else sd_folder
    pipe = load_pipeline("tiny/x", folder, device="cpu", guidance_scale=3.0, scheduler=scheduler)
    parts = {
        "vae": pipe.vae,
        "text_encoder": pipe.text_encoders[0],
        "tokenizer": pipe.tokenizers[0],
        "unet": pipe.unet,
        "scheduler": copy.deepcopy(pipe.scheduler),
    }
    if xl:
        ref = StableDiffusionXLPipeline(
            text_encoder_2=pipe.text_encoders[1], tokenizer_2=pipe.tokenizers[1], **parts
        )
        ref.watermark = None
    else:
        ref = StableDiffusionPipeline(
            safety_checker=None, feature_extractor=None, requires_safety_checker=False, **parts
        )
    ref.set_progress_bar_config(disable=True)

    def theirs(scale: float) -> torch.Tensor:
        return ref(
            PROMPTS,
            num_inference_steps=4,
            guidance_scale=3.0,
            latents=pipe.initial_noise([0, 1]),
            output_type="pt",
            cross_attention_kwargs={"scale": scale},
        ).images

    base = sample_images(pipe, parse_method("base"), PROMPTS, [0, 1], num_steps=4)
    torch.testing.assert_close(base, theirs(1.0), rtol=0, atol=1e-6)
    pipe.add_lora(rank=4)
    perturb(pipe)
    for method, scale in (("draft", 1.0), ("lora-scale:0.5", 0.5)):
        ours = sample_images(pipe, parse_method(method), PROMPTS, [0, 1], num_steps=4)
        torch.testing.assert_close(ours, theirs(scale), rtol=0, atol=1e-6)
    assert not torch.allclose(ours, base, atol=1e-3)  # the adapter changes the images
