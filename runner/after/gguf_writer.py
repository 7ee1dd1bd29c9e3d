"""Write a Llama-architecture model as a GGUF file, with PyPI `gguf`'s GGUFWriter.

The runner writes the file itself instead of calling llama.cpp's convert_hf_to_gguf.py:
no llama.cpp checkout, no cmake, nothing that breaks when llama.cpp moves (docs/export.md
says why). What it writes is what llama.cpp reads for its `llama` architecture:

- hyperparameters under `llama.*` (context length, sizes, heads, rope base, norm eps);
- tensors under llama.cpp's names (`gguf.TensorNameMap`), with q and k rows permuted
  the way llama.cpp's rotary embedding expects them (transformers' GGUF loader undoes
  exactly this permutation, so a round trip is exact);
- 1-D tensors (norms) in float32, matrices in float16 or Q8_0 (`gguf.quants`);
- Llama 3's rope scaling as the `rope_freqs` tensor of per-frequency factors.

A model with anything else (another architecture, biases, another activation or rope
scaling) is refused by `refusal` before anything is loaded or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.gguf_vocab import GgufVocab

if TYPE_CHECKING:
    from transformers import PreTrainedModel

EXPORT_TYPES = ("f16", "q8_0")
LLAMA_ROPE_TYPES = ("default", "llama3")


@dataclass(frozen=True)
class Hparams:
    """The numbers llama.cpp's `llama` architecture reads from `llama.*` keys."""

    layers: int
    context: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float
    rope_type: str
    norm_eps: float
    vocab: int
    tied: bool


def _get(config: Any, key: str, default: Any = None) -> Any:
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def rope_of(config: Any) -> dict[str, Any]:
    """The rope parameters: transformers 5's `rope_parameters`, or the older fields."""
    rope = dict(_get(config, "rope_parameters") or _get(config, "rope_scaling") or {})
    rope.setdefault("rope_theta", _get(config, "rope_theta", 10000.0))
    rope["rope_type"] = rope.get("rope_type") or rope.get("type") or "default"
    return rope


def refusal(config: Any) -> str | None:
    """Why a model cannot be written as llama.cpp's `llama` architecture exactly, or
    None when it can (`config`: its config.json as a dict, or a transformers config)."""
    model_type = _get(config, "model_type")
    if model_type != "llama":
        return f"its architecture is {model_type!r}; recipe export writes Llama models"
    if _get(config, "hidden_act", "silu") != "silu":
        return f"its activation is {_get(config, 'hidden_act')!r}, not silu"
    for flag in ("attention_bias", "mlp_bias"):
        if _get(config, flag):
            return f"it has {flag}: true (llama.cpp's llama architecture has no biases)"
    if (_get(config, "pretraining_tp") or 1) != 1:
        return "it has pretraining_tp > 1"
    rope = rope_of(config)
    if rope["rope_type"] not in LLAMA_ROPE_TYPES:
        return f"its rope scaling is {rope['rope_type']!r} (written: default, llama3)"
    return None


def hparams_of(config: Any) -> Hparams:
    """The `llama.*` numbers of a transformers Llama config."""
    heads = int(_get(config, "num_attention_heads"))
    hidden = int(_get(config, "hidden_size"))
    rope = rope_of(config)
    return Hparams(
        layers=int(_get(config, "num_hidden_layers")),
        context=int(_get(config, "max_position_embeddings")),
        hidden=hidden,
        ffn=int(_get(config, "intermediate_size")),
        heads=heads,
        kv_heads=int(_get(config, "num_key_value_heads") or heads),
        head_dim=int(_get(config, "head_dim") or hidden // heads),
        rope_theta=float(rope["rope_theta"]),
        rope_type=str(rope["rope_type"]),
        norm_eps=float(_get(config, "rms_norm_eps")),
        vocab=int(_get(config, "vocab_size")),
        tied=bool(_get(config, "tie_word_embeddings", False)),
    )


def permute_rows(weights: Any, heads: int) -> Any:
    """q/k rows reordered from transformers' rotary layout (two halves per head) to
    llama.cpp's (interleaved pairs): per head, (2, half, ...) becomes (half, 2, ...)."""
    half = weights.shape[0] // heads // 2
    grouped = weights.reshape(heads, 2, half, *weights.shape[1:])
    return grouped.swapaxes(1, 2).reshape(weights.shape)


def rope_factors(config: Any, hp: Hparams) -> Any:
    """Llama 3 rope scaling as llama.cpp applies it: one factor per rotary frequency,
    the plain frequency divided by the scaled one that transformers computes."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    plain = 1.0 / (hp.rope_theta ** (torch.arange(0, hp.head_dim, 2).float() / hp.head_dim))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    return (plain / scaled.float()).numpy().astype("float32")


def gguf_tensors(model: PreTrainedModel, hp: Hparams, kind: str) -> Any:
    """(llama.cpp name, array, GGML type) of every weight the file holds."""
    import gguf
    import numpy as np
    import torch

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp.layers)
    matrix = gguf.GGMLQuantizationType.F16 if kind == "f16" else gguf.GGMLQuantizationType.Q8_0
    if hp.rope_type == "llama3":
        yield "rope_freqs.weight", rope_factors(model.config, hp), gguf.GGMLQuantizationType.F32
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and hp.tied:
            continue  # llama.cpp reuses token_embd when there is no output tensor
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise_unmapped(hf_name)
        data = tensor.detach().to(torch.float32).numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_rows(data, hp.heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_rows(data, hp.kv_heads)
        if data.ndim == 1:
            yield name, np.ascontiguousarray(data), gguf.GGMLQuantizationType.F32
        else:
            yield name, encode(data, matrix, name), matrix


def raise_unmapped(hf_name: str) -> None:
    from runner.after.gguf_vocab import ExportError

    raise ExportError(
        f"the model has a weight llama.cpp's llama architecture has no place for "
        f"({hf_name}); recipe export writes plain Llama models only"
    )


def encode(data: Any, kind: Any, name: str) -> Any:
    """A float32 matrix as float16 or Q8_0 bytes; refused when float16 cannot hold it."""
    import gguf
    import numpy as np

    if kind == gguf.GGMLQuantizationType.F16:
        half = data.astype(np.float16)
        if not np.isfinite(half).all():
            from runner.after.gguf_vocab import ExportError

            raise ExportError(
                f"{name} holds values beyond float16's range (65504); export with "
                "--type q8_0, which keeps a float16 scale per block of 32"
            )
        return half
    return gguf.quants.quantize(np.ascontiguousarray(data), kind)


def write_gguf(
    path: Path,
    model: PreTrainedModel,
    vocab: GgufVocab,
    specials: dict[str, int],
    chat_template: str | None,
    kind: str,
    name: str,
) -> None:
    """Write `model` (a Llama model whose config `refusal` accepted) with the tokenizer
    metadata `vocab`, the run's special ids and chat template, to `path`."""
    import gguf

    hp = hparams_of(model.config)
    if vocab.size != hp.vocab:
        from runner.after.gguf_vocab import ExportError

        raise ExportError(
            f"the tokenizer has {vocab.size} tokens but the model's embeddings "
            f"{hp.vocab} rows; llama.cpp needs one row per token"
        )
    writer = gguf_writer(path)
    writer.add_type("model")
    writer.add_name(name)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_hparams(writer, hp)
    for key, value, value_type, item_type in vocab.fields:
        writer.add_key_value(
            key,
            value,
            gguf.GGUFValueType(value_type),
            sub_type=None if item_type is None else gguf.GGUFValueType(item_type),
        )
    for key, token_id in specials.items():
        writer.add_uint32(f"tokenizer.ggml.{key}", token_id)
    if chat_template:
        writer.add_chat_template(chat_template)
    for tensor_name, data, qtype in gguf_tensors(model, hp, kind):
        writer.add_tensor(tensor_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_writer(path: Path) -> Any:
    """PyPI gguf's GGUFWriter for the `llama` architecture, writing an empty array too.

    The runner's byte-level tokenizer has no merges, and llama.cpp requires the
    `tokenizer.ggml.merges` key of a BPE vocabulary: the GGUF format and llama.cpp read an
    empty array (n = 0), only the Python writer refuses to write one."""
    import gguf

    class Writer(gguf.GGUFWriter):
        def _pack_val(self, val: Any, vtype: Any, add_vtype: bool, sub_type: Any = None) -> bytes:
            if vtype == gguf.GGUFValueType.ARRAY and isinstance(val, list) and not val:
                kind = self._pack("I", vtype) if add_vtype else b""
                item = sub_type if sub_type is not None else gguf.GGUFValueType.STRING
                return kind + self._pack("I", item) + self._pack("Q", 0)
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer(str(path), "llama", use_temp_file=True)


def add_hparams(writer: Any, hp: Hparams) -> None:
    """The `llama.*` keys llama.cpp reads."""
    writer.add_context_length(hp.context)
    writer.add_embedding_length(hp.hidden)
    writer.add_block_count(hp.layers)
    writer.add_feed_forward_length(hp.ffn)
    writer.add_head_count(hp.heads)
    writer.add_head_count_kv(hp.kv_heads)
    writer.add_rope_dimension_count(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.norm_eps)
    writer.add_vocab_size(hp.vocab)
    if hp.head_dim != hp.hidden // hp.heads:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
