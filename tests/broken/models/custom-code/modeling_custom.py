"""A model's own code that imports a sibling file, as transformers copies them both."""

from .configuration_custom import CustomConfig  # noqa: F401

raise RuntimeError("recipe imported a model's own code")
