"""Diversity and fidelity metrics as pure functions on feature arrays (one module per metric).

Modules: ``stats`` (streaming mean/covariance), ``fid``, ``scd``, ``manifold`` (precision,
recall, density, coverage), ``vendi``, ``kid``, ``bootstrap``.
"""
