"""rdbench: metrics and benchmarks for the reward-diversity tradeoff in text-to-image diffusion.

Data flow: images -> features -> metrics -> results -> leaderboard.
"""

from rdbench.errors import RdbenchError

__version__ = "0.1.0"

__all__ = ["RdbenchError", "__version__"]
