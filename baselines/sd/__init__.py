"""Stable Diffusion baselines on diffusers + peft: recipes, ``train``, ``generate``, ``reproduce``.

The algorithms are :mod:`baselines.core`'s; this package supplies SD components
(:mod:`baselines.sd.pipeline`), typed TOML recipes (:mod:`baselines.sd.recipes`) and the glue.
"""
