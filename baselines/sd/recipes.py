"""Typed TOML recipes for the SD baselines: model, sampler, LoRA, DRaFT training, evaluation
and the sweeps of ``reproduce``.

A recipe is a TOML file (``baselines/recipes/<name>.toml`` ships the paper's settings, REFERENCE
section 1); every table and key is checked by pydantic (unknown keys are errors, so a typo
cannot silently fall back to a default). ``load_recipe(name_or_path, overrides)`` accepts
dotted overrides such as ``{"train.steps": 2, "model.path": "/models/sd14"}``.

Methods (``generate --method``): ``base`` (adapters off), ``draft`` (LoRA at scale 1),
``lora-scale:a`` (LoRA residual times ``a``), ``aig:<schedule>`` (e.g. ``aig:power:2``, see
:mod:`baselines.core.schedules`). KL-regularised models are ``draft`` with the LoRA trained
at that lambda.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baselines.core.draft import DraftConfig
from baselines.core.schedules import parse_schedule
from rdbench.errors import RdbenchError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
PosInt = Annotated[int, Field(ge=1)]
NonNeg = Annotated[float, Field(ge=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    name: str  # rdbench.weights entry (sd-v1-4, sdxl-base-1.0) or a Hugging Face repo id
    path: str | None = None  # local diffusers folder (overrides the download)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str | None = None  # None: CUDA if available, else CPU


class SamplingSpec(_Spec):
    scheduler: Literal["ddim", "euler"] = "ddim"
    steps: PosInt = 25
    eta: NonNeg = 0.0
    guidance_scale: float = Field(7.5, ge=1.0)
    resolution: PosInt | None = None  # None: the UNet's native size


class LoraSpec(_Spec):
    rank: PosInt = 32
    alpha: float | None = Field(None, gt=0)  # None: alpha = rank (scale 1)
    targets: list[str] = ["to_k", "to_q", "to_v", "to_out.0"]
    # A's initialisation (B = 0 either way): "gaussian" N(0, 1/r^2), as diffusers' LoRA
    # training scripts and REFERENCE section 4; "kaiming" is peft's default (uniform)
    init: Literal["gaussian", "kaiming"] = "gaussian"


class PromptSpec(_Spec):
    """Prompts from an rdbench suite (``rdbench prompts list``); ``suite = "file"`` + ``path``
    reads a user file."""

    suite: str
    path: str | None = None
    split: str | None = None
    limit: PosInt | None = None
    seed: int = Field(0, ge=0)

    def load(self) -> list[Any]:
        from rdbench.prompts.suites import load_suite

        return list(
            load_suite(
                self.suite, path=self.path, split=self.split, limit=self.limit, seed=self.seed
            )
        )


class TrainSpec(_Spec):
    reward: str = "pickscore"  # rdbench.rewards name, e.g. "hpsv2:v2.1"
    reward_weights: str | None = None  # local override of the reward's weights
    reward_options: dict[str, Any] = {}  # reward-specific options, e.g. {arch = "ViT-H-14"}
    prompts: PromptSpec
    steps: PosInt = 1000
    batch_size: PosInt = 4
    grad_accum: PosInt = 16
    lr: float = Field(2.5e-4, gt=0)
    weight_decay: NonNeg = 5e-3
    grad_clip: float = Field(10.0, gt=0)
    k: PosInt = 1
    lv: int = Field(0, ge=0)
    kl_lambda: NonNeg = 0.0
    grad_checkpointing: bool = False
    # accelerate's autocast (+ loss scaling for fp16); None: from model.dtype (float32: "no")
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    checkpoint_every: PosInt = 50
    seed: int = Field(0, ge=0)


class EvalSpec(_Spec):
    prompts: PromptSpec
    images_per_prompt: PosInt = 4
    seed: int = Field(0, ge=0)
    batch_size: PosInt = 8
    extractors: list[str] = ["inception"]
    extractor_options: dict[str, dict[str, Any]] = {}  # e.g. {clip = {model = "ViT-L-14"}}
    metrics: list[str] | None = None  # None: rdbench evaluate's defaults


class SweepSpec(_Spec):
    kl_lambda: list[NonNeg] = []
    lora_scale: list[Annotated[float, Field(ge=0, le=1)]] = []
    aig: list[str] = []

    @field_validator("aig")
    @classmethod
    def _schedules(cls, specs: list[str]) -> list[str]:
        for spec in specs:
            parse_schedule(spec)(0, 2)  # raises RdbenchError for a bad spec
        return specs


class Recipe(_Spec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
    description: str = ""
    model: ModelSpec
    sampling: SamplingSpec = SamplingSpec()
    lora: LoraSpec = LoraSpec()
    train: TrainSpec
    eval: EvalSpec
    sweep: SweepSpec = SweepSpec()

    def draft_config(self, kl_lambda: float | None = None) -> DraftConfig:
        """The core's :class:`DraftConfig` for this recipe (``kl_lambda`` overrides)."""
        t, s = self.train, self.sampling
        return DraftConfig(
            steps=t.steps,
            grad_accum=t.grad_accum,
            lr=t.lr,
            weight_decay=t.weight_decay,
            grad_clip=t.grad_clip,
            num_inference_steps=s.steps,
            eta=s.eta,
            k=t.k,
            lv=t.lv,
            kl_lambda=t.kl_lambda if kl_lambda is None else kl_lambda,
            checkpoint=t.grad_checkpointing,
            seed=t.seed,
        )

    def mixed_precision(self) -> str:
        """``accelerate``'s mixed precision for training: ``train.mixed_precision``, or the one
        matching ``model.dtype`` (float32: "no", float16: "fp16", bfloat16: "bf16")."""
        default = {"float32": "no", "float16": "fp16", "bfloat16": "bf16"}[self.model.dtype]
        return self.train.mixed_precision or default

    def kl_lambdas(self) -> list[float]:
        """Trainings ``reproduce`` runs: the KL sweep, plus lambda 0 when other sweeps need it."""
        lambdas = list(self.sweep.kl_lambda) or [self.train.kl_lambda]
        if (self.sweep.lora_scale or self.sweep.aig) and 0.0 not in lambdas:
            lambdas.insert(0, 0.0)
        return sorted(set(lambdas))

    def inference_methods(self) -> list[str]:
        """Methods that reuse the lambda = 0 LoRA: LoRA scales and AIG schedules."""
        return [f"lora-scale:{a:g}" for a in self.sweep.lora_scale] + [
            f"aig:{s}" for s in self.sweep.aig
        ]


def recipe_file(name_or_path: str | Path) -> Path:
    """A recipe path, or the shipped ``baselines/recipes/<name>.toml``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RdbenchError(f"recipe file {str(path)!r} does not exist")
        return path
    shipped = RECIPES_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
        raise RdbenchError(f"no recipe {str(name_or_path)!r}; shipped recipes: {', '.join(names)}")
    return shipped


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RdbenchError(f"override {key!r}: {part!r} is not a table")
        node = child
    node[last] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.steps=2"`` -> ``("train.steps", 2)``; the value is read as TOML, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RdbenchError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def load_recipe(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, override and validate a recipe; every problem is one :class:`RdbenchError`."""
    path = recipe_file(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RdbenchError(f"recipe {str(path)!r} is not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise RdbenchError(f"recipe {str(path)!r}: {problems}") from None
