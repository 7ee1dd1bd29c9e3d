"""`recipe plan`: peak GPU memory of a recipe, estimated term by term without torch.

Pure: imports neither torch nor transformers/trl/datasets/peft; part of the lint layer.
    architecture  config.json fields -> the dimensions that matter
    setup         recipe -> method, dtypes, batch, optimizer, checkpointing, launch
    states        weights, adapters, gradients, optimizer states (byte-exact)
    activations   tensors saved for backward, LM head scratch
    estimate      the terms and the peak
    advice        changes that would make it fit
    throughput    time per epoch
    verdict       all of it against a card
"""

from runner.plan.estimate import Estimate, Term, estimate_memory
from runner.plan.verdict import Plan, PlanError, make_plan

__all__ = ["Estimate", "Plan", "PlanError", "Term", "estimate_memory", "make_plan"]
