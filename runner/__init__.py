"""recipe: YAML recipes for fine-tuning language models with TRL."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"


def _shipped_folder() -> Path:
    """runner/shipped/: the recipes, demo data, schema and templates the package ships.

    Found through importlib.resources, so it is the same folder in an editable checkout
    and in an installed wheel, from any working directory. A wheel installs unzipped, so
    the folder is a real directory (the `$schema` modeline and data paths need one).
    """
    folder = files(__name__) / "shipped"
    if not isinstance(folder, Path):
        raise RuntimeError(f"recipe-runner needs an unzipped install; {folder} is not a folder")
    return folder


SHIPPED_DIR = _shipped_folder()
RECIPES_DIR = SHIPPED_DIR / "recipes"  # the shipped recipes, and their demo data in data/
SCHEMAS_DIR = SHIPPED_DIR / "schemas"  # recipe-v1.schema.json (source/: gen_schema inputs)
TEMPLATES_DIR = SHIPPED_DIR / "templates"  # text templates (*.json), chat templates (*.jinja)
