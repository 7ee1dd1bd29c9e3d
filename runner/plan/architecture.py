"""The shapes that memory depends on, read from a model's config.json fields.

Covers the Llama family (llama, mistral, qwen2 and friends share the block): embedding,
decoder layers of attention + gated MLP + two RMSNorms, final norm, LM head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The linear layers of one decoder layer, in forward order.
LAYER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer's dimensions."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    attention_bias: bool = False
    mlp_bias: bool = False
    context: int | None = None  # max_position_embeddings: the longest row it takes

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer in one decoder layer."""
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def linear_has_bias(self, name: str) -> bool:
        if name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            return self.attention_bias
        return self.mlp_bias

    def layer_linear_params(self) -> int:
        """Weights (and biases) of the linear layers of one decoder layer."""
        return sum(
            i * o + (o if self.linear_has_bias(name) else 0)
            for name, (i, o) in self.linear_shapes().items()
        )

    def layer_norm_params(self) -> int:
        return 2 * self.hidden

    def layer_params(self) -> int:
        return self.layer_linear_params() + self.layer_norm_params()

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        """Parameters of a separate LM head (0 when tied to the embedding)."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def total_params(self) -> int:
        return (
            self.embedding_params
            + self.layers * self.layer_params()
            + self.hidden  # final norm
            + self.lm_head_params
        )

    def compute_params(self) -> int:
        """Parameters that take part in matrix multiplies (for FLOPs): all but the lookup."""
        return self.layers * self.layer_linear_params() + self.vocab * self.hidden


class ArchitectureError(ValueError):
    """The config lacks a field the estimate needs."""


def architecture_from_config(config: dict[str, Any]) -> Architecture:
    """Build an Architecture from config.json fields (raises ArchitectureError)."""
    missing = [
        key
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        if not isinstance(config.get(key), int)
    ]
    if missing:
        raise ArchitectureError(f"the model config lacks {', '.join(missing)}")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    return Architecture(
        model_type=str(config.get("model_type", "llama")),
        hidden=hidden,
        intermediate=config["intermediate_size"],
        layers=config["num_hidden_layers"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        # transformers' LlamaConfig default vocabulary when a config leaves it out
        vocab=config.get("vocab_size") or 32000,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=bool(config.get("attention_bias", False)),
        mlp_bias=bool(config.get("mlp_bias", False)),
        context=_whole_number(config.get("max_position_embeddings")),
    )


def _whole_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
