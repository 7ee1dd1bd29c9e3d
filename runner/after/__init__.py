"""After training: use what a run produced (`recipe infer`, `chat`, `merge`, `eval`).

- `target`: what RUN_OR_MODEL names (a run directory, a model or adapter directory, or a
  cached hub id) and whether its models are available offline; no heavy imports.
- `load`: load the trained model, the base model and the tokenizer, offline.
- `prompts`: prompts formatted exactly as training formatted them; stop-token ids.
- generation itself (settings, cut at the end-of-turn token) is `runner.generation`,
  shared with held-out exact match during training (`runner.run.exact_match`).
- `chat`: the multi-turn loop of `recipe chat`.
- `merge`: merge a LoRA/QLoRA adapter into its base and save a standalone model.
- `evaluate`: loss, perplexity and reference-compared generations of a run.
"""
