"""Reward-finetuning baselines for the reward-diversity tradeoff, built on rdbench.

``baselines.core`` holds the model-agnostic algorithms (differentiable sampling, DRaFT-K/LV,
KL regularization, LoRA scaling, AIG); ``baselines.toy`` is a Gaussian-mixture testbed that runs
the same code on CPU in minutes (``python -m baselines demo``).
"""
