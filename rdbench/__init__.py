"""rdbench: metrics and benchmarks for the reward-diversity tradeoff in text-to-image diffusion.

Data flow: images -> features -> metrics -> results -> leaderboard.
"""

from rdbench.errors import RdbenchError

__version__ = "0.1.0"

__all__ = ["EvaluateOptions", "RdbenchError", "__version__", "evaluate"]


def __getattr__(name: str):  # lazy, so that `import rdbench` stays light (no torch)
    if name in ("evaluate", "EvaluateOptions"):
        import rdbench.evaluate as module  # a callable module: rdbench.evaluate(...) evaluates

        return module if name == "evaluate" else module.EvaluateOptions
    raise AttributeError(f"module 'rdbench' has no attribute {name!r}")
