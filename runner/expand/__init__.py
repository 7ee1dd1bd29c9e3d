"""Expand a resolved recipe into what the libraries take: keyword arguments for
SFTConfig / LoraConfig / BitsAndBytesConfig (library_kwargs), the accelerate command
(launch), and the model and tokenizer loading (model, tokenizer).

Only `library_kwargs` and `launch` are import-light; the others import torch and
transformers when their functions run.
"""
