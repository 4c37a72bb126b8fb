"""Prompt suites, stable prompt ids, deterministic splits and generation plans.

``load_suite("partiprompts", split="test", limit=200)`` returns a :class:`PromptSuite`;
``make_plan(suite, images_per_prompt=8, seed=0)`` the manifest lines of the images to
generate. See ``data_cards/`` for each suite's source, licence and known problems.
"""

from rdbench.prompts.parse import Prompt, Record, build_prompts, normalise_text, read_user_file
from rdbench.prompts.plan import image_path, make_plan, read_plan, write_plan
from rdbench.prompts.splits import (
    DEFAULT_FRACTIONS,
    SPLITS,
    assign_splits,
    filter_categories,
    select_split,
    stratified_limit,
)
from rdbench.prompts.suites import SUITES, PromptSuite, SourceFile, SuiteSpec, load_suite

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLITS",
    "SUITES",
    "Prompt",
    "PromptSuite",
    "Record",
    "SourceFile",
    "SuiteSpec",
    "assign_splits",
    "build_prompts",
    "filter_categories",
    "image_path",
    "load_suite",
    "make_plan",
    "normalise_text",
    "read_plan",
    "read_user_file",
    "select_split",
    "stratified_limit",
    "write_plan",
]
