"""recipe: YAML recipes for fine-tuning language models with TRL."""

from pathlib import Path

__version__ = "0.1.0"

# The repository layout the runner ships with (recipes/, schemas/, templates/ sit beside
# the package; the supported install is `pip install -e .` from a clone).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RECIPES_DIR = PROJECT_ROOT / "recipes"
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
