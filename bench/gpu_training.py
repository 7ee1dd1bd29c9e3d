"""The training side of bench/gpu_memory.py: build a shipped recipe's architecture with
random weights, quantize and adapt it as SFTTrainer would, and run timed optimizer steps
on synthetic batches. See bench/gpu_memory.py for what runs and why not SFTTrainer."""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any


def build_model(config: dict[str, Any], data: dict[str, Any], setup, device):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    add_fused_lm_head = fused_lm_head_patcher()
    fields = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")}
    cfg = AutoConfig.for_model(**fields)
    cfg.use_cache = False
    dtype = getattr(torch, setup.dtype)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=setup.attn)
    if setup.method == "qlora":
        quantize_linears(model, data.get("quantization") or {}, device)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    if setup.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if setup.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        lora = {k: v for k, v in (data.get("lora") or {}).items()}
        model = get_peft_model(model, LoraConfig(**lora))
        if setup.checkpointing:
            model.enable_input_require_grads()
        if setup.method == "qlora":  # what SFTTrainer does for quantized models
            for param in model.parameters():
                if param.requires_grad:
                    param.data = param.data.to(torch.bfloat16)
    model.train()
    return model


def fused_lm_head_patcher():
    """trl's add_fused_lm_head; if trl.trainer will not import on this machine, the same
    forward rebuilt on trl's kernel (trl.kernels imports only torch and transformers)."""
    try:
        from trl.trainer.utils import add_fused_lm_head

        return add_fused_lm_head
    except ImportError as exc:
        try:
            from trl.kernels import ChunkedLogProbFunction
        except ImportError:
            sys.exit(f"trl is needed for its fused LM head ({exc}); see ../shared/gpu/README.md")
    import types

    def add(model, outputs=("log_probs",)):
        original = model.forward

        def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
            if not fused_lm_head:
                return original(*args, labels=labels, **kwargs)
            kwargs["use_cache"] = False
            hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
            targets = labels[:, 1:]
            keep = targets != -100
            weight = self.get_output_embeddings().weight
            per_token = ChunkedLogProbFunction.apply(
                hidden[keep], weight, None, targets[keep], 1.0, 32768, None, 1.0, outputs
            )
            log_probs = per_token[0].new_zeros(keep.shape).masked_scatter(keep, per_token[0])
            return types.SimpleNamespace(log_probs=log_probs)

        model.forward = types.MethodType(forward, model)

    print("note: trl.trainer did not import; using trl.kernels directly", file=sys.stderr)
    return add


def quantize_linears(model, quant: dict[str, Any], device) -> None:
    """Swap the decoder's nn.Linear layers for bitsandbytes Linear4bit (lm_head stays)."""
    import bitsandbytes as bnb
    import torch

    compute = getattr(torch, str(quant.get("bnb_4bit_compute_dtype", "bfloat16")))
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for child_name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=compute,
                    quant_type=quant.get("bnb_4bit_quant_type", "fp4"),
                    compress_statistics=bool(quant.get("bnb_4bit_use_double_quant", False)),
                    device="meta",
                )
                weight = bnb.nn.Params4bit(
                    child.weight.data,
                    requires_grad=False,
                    quant_type=q.weight.quant_type,
                    compress_statistics=q.weight.compress_statistics,
                    blocksize=q.weight.blocksize,
                )
                q.weight = weight._quantize(device)
                if child.bias is not None:
                    q.bias = child.bias
                setattr(parent, child_name, q)
                del child
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_optimizer(model, setup, cuda: bool):
    import torch
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, optim=setup.optim, use_cpu=not cuda, learning_rate=1e-5, report_to=[]
        )
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = cls(params, **kwargs)
    if "bitsandbytes" in str(cls) and kwargs.get("optim_bits") == 8:
        import bitsandbytes as bnb

        manager = bnb.optim.GlobalOptimManager.get_instance()
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                manager.register_module_override(module, "weight", {"optim_bits": 32})
    return optimizer


def synthetic_batch(setup, vocab: int, device):
    import torch

    ids = torch.randint(3, vocab, (setup.batch, setup.seq), device=device)
    mask = torch.ones_like(ids)
    if setup.batch > 1 and not setup.padding_free:
        mask[-1, -1] = 0  # a padded row, as the collator makes them
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def train(model, optimizer, setup, vocab: int, device, steps: int, warmup: int):
    """Optimizer steps of `grad_accum` micro-batches; returns (timed seconds, tokens)."""
    import torch

    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=setup.mixed_precision == "bf16"
    )
    params = [p for p in model.parameters() if p.requires_grad]
    timed, tokens, start = 0.0, 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        for _ in range(setup.grad_accum):
            ids, mask, labels = synthetic_batch(setup, vocab, device)
            num_items = (labels[:, 1:] != -100).sum() * setup.grad_accum
            with autocast:
                out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
            loss = -out.log_probs.sum() / num_items
            loss.backward()
            if step >= warmup:
                tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    timed = time.perf_counter() - start
    return timed, tokens
