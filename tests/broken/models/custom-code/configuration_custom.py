"""A model's own code, as a hub repository carries it: `recipe lint` names this file
(tests/broken/trust-remote-code-local.yaml) and never imports it."""

raise RuntimeError("recipe imported a model's own code")
