"""Model-agnostic baseline algorithms: one implementation for the toy testbed and for SD.

A *denoiser* is a callable ``denoiser(x_t, t, cond) -> eps`` (noise prediction); a *predictor*
is ``predict(x_t, t, i) -> eps`` for sampler step ``i`` (``i = 0`` is the noisiest step), which
is how guidance methods that change over the trajectory (AIG) plug into the sampler.
"""
