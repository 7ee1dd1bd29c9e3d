"""What autograd keeps for backward over one forward with TRL's fused LM head: the
measurement the plan's activation terms are calibrated against (tests/test_plan_*.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# the tiny Llama both calibrations measure (grouped-query attention, untied head)
TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "tie_word_embeddings": False,
}


def saved_bytes(model: Any, forward: Callable[[], Any], *, checkpointing: bool) -> int:
    """Bytes of the tensors autograd saves while `forward()` runs and its loss backs up
    (storage-deduplicated, parameters excluded; with `checkpointing`, the checkpointed
    layers' inputs, which is what non-reentrant checkpointing keeps). `forward` returns
    the loss; TRL's fused LM head is added to `model` (its base model, under PEFT)."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    add_fused_lm_head(base, outputs=("log_probs", "entropy", "is_top1"))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(t):
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                saved[s.data_ptr()] = s.nbytes()

    if checkpointing:
        from torch.utils.checkpoint import checkpoint

        def recording_checkpoint(fn, *args, **kwargs):
            for value in list(args) + list(getattr(fn, "keywords", {}).values()):
                for t in value if isinstance(value, tuple) else (value,):
                    keep(t)
            return checkpoint(fn, *args, use_reentrant=False, **kwargs)

        base._set_gradient_checkpointing(
            enable=True, gradient_checkpointing_func=recording_checkpoint
        )
        base.enable_input_require_grads()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (keep(t), t)[1], lambda t: t):
        loss = forward()
    loss.backward()
    return sum(saved.values())
