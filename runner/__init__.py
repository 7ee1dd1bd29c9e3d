"""recipe: YAML recipes for fine-tuning language models with TRL."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"


def _package_folder() -> Path:
    """The installed `runner` package as a folder. A wheel installs unzipped, so it is a
    real directory (the `$schema` modeline and data paths need one)."""
    folder = files(__name__)
    if not isinstance(folder, Path):
        raise RuntimeError(f"recipe-runner needs an unzipped install; {folder} is not a folder")
    return folder


def shipped_folder(name: str) -> Path:
    """Where the shipped `recipes`, `schemas` or `templates` are, from any working folder.

    The repository keeps them at its top level, the one source; the wheel carries them
    inside the package as runner/shipped/<name>/ (pyproject.toml maps one onto the
    other). So an installed wheel answers runner/shipped/<name>, and a checkout or an
    editable install, which has no such folder, answers <checkout>/<name>. A folder
    beside an installed package (site-packages/recipes, another distribution's) is
    never taken for ours: the checkout is known by its pyproject.toml.
    """
    package = _package_folder()
    installed = package / "shipped" / name
    checkout = package.parent
    if installed.is_dir() or not (checkout / "pyproject.toml").is_file():
        return installed
    return checkout / name


PACKAGE_DIR = _package_folder()
SHIPPED_DIR = PACKAGE_DIR / "shipped"  # what ships only in the package: the lock
RECIPES_DIR = shipped_folder("recipes")  # the shipped recipes, and their demo data in data/
SCHEMAS_DIR = shipped_folder("schemas")  # recipe-v1.schema.json (source/: gen_schema inputs)
TEMPLATES_DIR = shipped_folder("templates")  # text templates (*.json), chat templates (*.jinja)
