"""A GGUF file's header, read without loading a tensor or importing anything heavy.

GGUF (llama.cpp's format) starts with the magic `GGUF`, a version, the tensor and
metadata counts, then key/value metadata (architecture, dimensions, the tokenizer's
vocabulary and chat template) and one record per tensor (name, shape, type). Lint and
`recipe plan` read that much: whether a file is GGUF at all, which architecture it holds
and whether the installed transformers converts it, its config.json-like fields and its
parameter count. The weights themselves are only read when a run dequantizes the file
(runner.expand.model). Pure Python, standard library only.
"""

from __future__ import annotations

import functools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
SUFFIX = ".gguf"
# llama.cpp architecture names -> transformers model_type, for the architectures
# transformers 5.23 converts from GGUF (transformers.modeling_gguf_pytorch_utils:
# GGUF_SUPPORTED_ARCHITECTURES, and the names it renames; tests/test_gguf.py keeps this
# table equal to the installed transformers').
SUPPORTED_ARCHITECTURES = {
    "llama": "llama",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen2moe": "qwen2_moe",
    "qwen3": "qwen3",
    "qwen3moe": "qwen3_moe",
    "phi3": "phi3",
    "bloom": "bloom",
    "falcon": "falcon",
    "stablelm": "stablelm",
    "gpt2": "gpt2",
    "starcoder2": "starcoder2",
    "mamba": "mamba",
    "nemotron": "nemotron",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "gemma4": "gemma4",
    "deci": "deci",
    "lfm2": "lfm2",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "t5": "t5",
    "t5encoder": "t5",
}
# GGUF metadata (after `<arch>.`) -> config.json field, as transformers maps them
CONFIG_FIELDS = {
    "context_length": "max_position_embeddings",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "embedding_length": "hidden_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "rope.freq_base": "rope_theta",
    "rope.dimension_count": "head_dim",
    "vocab_size": "vocab_size",
}
# value type -> struct format (8: string, 9: array are read apart)
SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9
KEEP_ITEMS = 16  # arrays longer than this keep their length only (vocabularies, merges)


class GgufError(ValueError):
    """A file that is not a readable GGUF file; the message says what was found."""


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF file says about itself: its metadata (long arrays as their length,
    under `key + ".length"`) and each tensor's name and shape."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, tuple[int, ...]]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def supported(self) -> bool:
        """Whether the installed transformers converts this architecture."""
        return self.architecture in SUPPORTED_ARCHITECTURES

    @property
    def parameters(self) -> int:
        """Weights in the file (every tensor's element count)."""
        return sum(_product(shape) for shape in self.tensors.values())

    @property
    def vocab_size(self) -> int | None:
        return self.metadata.get("tokenizer.ggml.tokens.length")

    @property
    def chat_template(self) -> str | None:
        template = self.metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) else None

    def config(self) -> dict[str, Any]:
        """The model's config.json fields, as transformers derives them."""
        arch = self.architecture
        config: dict[str, Any] = {"model_type": SUPPORTED_ARCHITECTURES.get(arch, arch)}
        for key, field in CONFIG_FIELDS.items():
            if f"{arch}.{key}" in self.metadata:
                config[field] = self.metadata[f"{arch}.{key}"]
        if self.vocab_size is not None:
            config["vocab_size"] = self.vocab_size
        config["tie_word_embeddings"] = "output.weight" not in self.tensors
        return config


def is_gguf(path: Path) -> bool:
    """Whether `path` is a file that starts with GGUF's magic bytes."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def read_header(path: Path) -> GgufHeader:
    """The header of a GGUF file (GgufError when it is not one); remembered by path,
    size and modification time, so lint's rules and the plan read it once."""
    stat = path.stat()
    return _read(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime_ns: int) -> GgufHeader:
    with open(path, "rb") as handle:
        if handle.read(4) != MAGIC:
            raise GgufError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            try:
                return _parse(Path(path), view)
            except (struct.error, UnicodeDecodeError, IndexError) as exc:
                raise GgufError(
                    f"{path}: the GGUF header is cut short or damaged ({exc})"
                ) from None


def _parse(path: Path, view: mmap.mmap) -> GgufHeader:
    reader = _Reader(view, 4)
    version = reader.scalar("I")
    if version not in (2, 3):
        raise GgufError(f"{path}: GGUF version {version} (this runner reads versions 2 and 3)")
    tensor_count, kv_count = reader.scalar("Q"), reader.scalar("Q")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = reader.string()
        value_type = reader.scalar("I")
        if value_type == ARRAY:
            item_type, length = reader.scalar("I"), reader.scalar("Q")
            items = reader.array(item_type, length)
            if items is None:
                metadata[key + ".length"] = length
            else:
                metadata[key] = items
        else:
            metadata[key] = reader.value(value_type)
    tensors: dict[str, tuple[int, ...]] = {}
    for _ in range(tensor_count):
        name = reader.string()
        dims = reader.scalar("I")
        shape = tuple(reader.scalar("Q") for _ in range(dims))
        reader.skip(4 + 8)  # type, offset
        tensors[name] = shape
    return GgufHeader(path, version, metadata, tensors)


class _Reader:
    """Little-endian values from a memory map, moving forward."""

    def __init__(self, view: mmap.mmap, offset: int) -> None:
        self.view, self.offset = view, offset

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.view, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def skip(self, count: int) -> None:
        self.offset += count

    def string(self) -> str:
        length = self.scalar("Q")
        if self.offset + length > len(self.view):
            raise IndexError(f"a text of {length} bytes runs past the end of the file")
        text = self.view[self.offset : self.offset + length].decode("utf-8")
        self.offset += length
        return text

    def value(self, value_type: int) -> Any:
        if value_type == STRING:
            return self.string()
        if value_type not in SCALARS:
            raise GgufError(f"unknown GGUF value type {value_type}")
        return self.scalar(SCALARS[value_type])

    def array(self, item_type: int, length: int) -> list[Any] | None:
        """The items, or None (skipped) for an array longer than KEEP_ITEMS."""
        if length <= KEEP_ITEMS:
            return [self.value(item_type) for _ in range(length)]
        if item_type == STRING:
            for _ in range(length):
                self.offset += struct.unpack_from("<Q", self.view, self.offset)[0] + 8
        elif item_type in SCALARS:
            self.offset += struct.calcsize(SCALARS[item_type]) * length
        else:
            for _ in range(length):  # nested arrays: rare, read through
                self.value(item_type)
        return None


def _product(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
