"""KL regularization of DRaFT as in the paper's reference code.

``KL term = mean over grad-carrying steps of mean((eps_ft(x_i) - eps_base(x_i))^2)`` on the
finetuned trajectory; the loss adds ``lambda * KL term``. The base prediction comes from the
same network with its adapters disabled, under ``torch.no_grad`` (it is a fixed target: the
gradient flows into the LoRA weights only through ``eps_ft``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from baselines.core.lora import adapters_disabled, lora_layers
from baselines.core.sampling import Denoiser


class KLPredictor:
    """A predictor that also records the KL term on every step where a graph is built."""

    def __init__(self, model: nn.Module, denoiser: Denoiser, cond: Any) -> None:
        self.model, self.denoiser, self.cond = model, denoiser, cond
        self.layers = lora_layers(model)  # looked up once, not at every grad-carrying step
        self.terms: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        eps = self.denoiser(x, t, self.cond)
        if torch.is_grad_enabled():
            with torch.no_grad(), adapters_disabled(self.model, layers=self.layers):
                eps_base = self.denoiser(x, t, self.cond)
            self.terms.append(((eps - eps_base) ** 2).mean())
        return eps

    def penalty(self) -> torch.Tensor:
        """The mean recorded term (0 when no step carried gradients)."""
        if not self.terms:
            return torch.zeros(())
        return torch.stack(self.terms).mean()
