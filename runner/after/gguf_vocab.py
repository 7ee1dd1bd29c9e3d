"""The tokenizer of an exported GGUF file: exactly the run's, or refused.

llama.cpp does not run the Hugging Face tokenizer: it reads the vocabulary, the merges
(or SentencePiece scores) and a pre-tokenizer *name* from the file, and splits text with
its own code for that name. A wrong or guessed name silently changes tokenization, so the
metadata comes from one of two places, never from a guess:

- the GGUF file the run's model came from (`model.id: *.gguf`): every `tokenizer.*`
  field is copied verbatim, after checking that the run's tokenizer has the same
  vocabulary (tokens the run added, e.g. a new pad token, are appended);
- a small table of the tokenizers the shipped recipes use, each recognised by the exact
  pre-tokenizer and model flags of the run's `tokenizer.json`: Llama 3 (byte-level BPE,
  llama.cpp's `llama-bpe`), the runner's byte-level tokenizer of the demo (no merges)
  and Llama 2 / TinyLlama (SentencePiece BPE, llama.cpp's `llama` tokenizer model).

Anything else is an `ExportError` that says what was found. The run's own special
tokens (bos, eos, pad, unk, and the end-of-turn token as `eot`) are written on top
(`special_ids`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.target import AfterError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# llama.cpp's token types (gguf.TokenType), written per token
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class ExportError(AfterError):
    """A model or tokenizer `recipe export` cannot write exactly; the message says why."""


@dataclass(frozen=True)
class KnownTokenizer:
    """A tokenizer the table converts: what its tokenizer.json says, and the names
    llama.cpp knows it by (`tokenizer.ggml.model`, `tokenizer.ggml.pre`)."""

    name: str
    ggml_model: str
    pre: str
    model_flags: dict[str, Any]
    pre_tokenizer: dict[str, Any] | None
    normalizer: dict[str, Any] | None = None


LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The tokenizers of the shipped recipes (../shared/fixtures/tokenizers as transformers
# saves them); tests/test_export_vocab.py checks each against llama.cpp where installed.
KNOWN_TOKENIZERS = (
    KnownTokenizer(
        name="Llama 3 (byte-level BPE)",
        ggml_model="gpt2",
        pre="llama-bpe",
        model_flags={"type": "BPE", "byte_fallback": False, "ignore_merges": True},
        pre_tokenizer={
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": LLAMA3_SPLIT},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": True,
                    "use_regex": False,
                },
            ],
        },
    ),
    # The runner's own (the demo's): one token per byte and no merges, so every
    # pre-tokenizer splits text into the same ids; llama.cpp's `default` one is exact.
    KnownTokenizer(
        name="the runner's byte-level tokenizer",
        ggml_model="gpt2",
        pre="default",
        model_flags={"type": "BPE", "byte_fallback": False, "merges": []},
        pre_tokenizer={
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": False,
        },
    ),
    KnownTokenizer(
        name="Llama 2 / TinyLlama (SentencePiece BPE)",
        ggml_model="llama",
        pre="default",
        model_flags={"type": "BPE", "byte_fallback": True, "fuse_unk": True},
        pre_tokenizer={
            "type": "Metaspace",
            "replacement": "\u2581",
            "prepend_scheme": "first",
            "split": False,
        },
    ),
)


@dataclass
class GgufVocab:
    """The `tokenizer.*` metadata of an exported file: (key, value, GGUF value type,
    item type for arrays) in writing order, and where it came from."""

    source: str
    fields: list[tuple[str, Any, int, int | None]] = field(default_factory=list)
    size: int = 0


def vocab_from_gguf(gguf_file: Path, tokenizer: PreTrainedTokenizerBase) -> GgufVocab:
    """Every `tokenizer.ggml.*` field of the file the run's model came from, verbatim
    (special ids excepted: the run's are written by `special_ids`), after checking that
    the run's tokenizer has the file's vocabulary; tokens the run added are appended."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(gguf_file))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ExportError(f"{gguf_file} has no tokenizer.ggml.tokens to copy")
    run_tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokens))))
    if run_tokens != tokens:
        first = next(i for i, (a, b) in enumerate(zip(run_tokens, tokens, strict=True)) if a != b)
        raise ExportError(
            f"the run's tokenizer is not the one in {gguf_file.name} (token {first} is "
            f"{run_tokens[first]!r} in the run, {tokens[first]!r} in the file), so the "
            "file's tokenizer metadata cannot be copied; export supports a GGUF model's own "
            "tokenizer, or one of: " + ", ".join(k.name for k in KNOWN_TOKENIZERS)
        )
    added = _added_tokens(tokenizer, len(tokens))
    vocab = GgufVocab(source=f"copied from {gguf_file.name}", size=len(tokens) + len(added))
    for key, reader_field in reader.fields.items():
        if not key.startswith("tokenizer.ggml.") or key.endswith("_token_id"):
            continue
        kind = GGUFValueType(reader_field.types[0])
        item = GGUFValueType(reader_field.types[1]) if kind == GGUFValueType.ARRAY else None
        value = reader_field.contents()
        if added and key == "tokenizer.ggml.tokens":
            value = value + [text for text, _ in added]
        elif added and key == "tokenizer.ggml.token_type":
            value = value + [kind_ for _, kind_ in added]
        elif added and key == "tokenizer.ggml.scores":
            value = value + [-1000.0] * len(added)
        vocab.fields.append((key, value, int(kind), None if item is None else int(item)))
    return vocab


def _field(reader: Any, key: str) -> Any:
    found = reader.fields.get(key)
    return None if found is None else found.contents()


def _added_tokens(tokenizer: PreTrainedTokenizerBase, start: int) -> list[tuple[str, int]]:
    """Tokens the run's tokenizer has beyond the first `start` ids (e.g. an added pad
    token): (text, llama.cpp token type)."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.convert_ids_to_tokens(list(range(start, len(tokenizer))))
    return [
        (text, CONTROL if start + offset in special else USER_DEFINED)
        for offset, text in enumerate(texts)
    ]


def known_tokenizer(tokenizer_json: dict[str, Any]) -> KnownTokenizer | None:
    """The table entry whose model flags, pre-tokenizer and normalizer the run's
    tokenizer.json has exactly; None when it is none of them."""
    model = tokenizer_json.get("model") or {}
    for known in KNOWN_TOKENIZERS:
        if all(model.get(key) == value for key, value in known.model_flags.items()) and (
            tokenizer_json.get("pre_tokenizer") == known.pre_tokenizer
            and tokenizer_json.get("normalizer") == known.normalizer
        ):
            return known
    return None


def vocab_from_table(folder: Path, tokenizer: PreTrainedTokenizerBase) -> GgufVocab:
    """The metadata of a shipped tokenizer (KNOWN_TOKENIZERS), from the run's
    tokenizer.json; ExportError for any other tokenizer."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    known = known_tokenizer(data)
    if known is None:
        pre = json.dumps(data.get("pre_tokenizer"))[:120] if data else "no tokenizer.json"
        raise ExportError(
            f"recipe export cannot write this tokenizer exactly ({folder}: pre-tokenizer "
            f"{pre}): llama.cpp would split text with a pre-tokenizer chosen by name, and a "
            "guessed name silently changes tokenization. It writes a GGUF model's own "
            "tokenizer and these: " + ", ".join(k.name for k in KNOWN_TOKENIZERS) + ". "
            "For another model, merge it (`recipe merge RUN`) and convert the merged folder "
            "with llama.cpp's convert_hf_to_gguf.py"
        )
    tokens = _dense_tokens(data, folder)
    vocab = GgufVocab(source=f"table: {known.name}", size=len(tokens))
    string, array, int32, float32, boolean = 8, 9, 5, 6, 7
    vocab.fields += [
        ("tokenizer.ggml.model", known.ggml_model, string, None),
        ("tokenizer.ggml.pre", known.pre, string, None),
        ("tokenizer.ggml.tokens", tokens, array, string),
        (
            "tokenizer.ggml.token_type",
            _token_types(data, tokens, known, tokenizer.unk_token),
            array,
            int32,
        ),
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    if known.ggml_model == "llama":  # SentencePiece: merge priority is the token's score
        vocab.fields.append(("tokenizer.ggml.scores", _scores(tokens, merges), array, float32))
        vocab.fields.append(("tokenizer.ggml.add_space_prefix", True, boolean, None))
    else:
        vocab.fields.append(("tokenizer.ggml.merges", merges, array, string))
    vocab.fields.append(("tokenizer.ggml.add_bos_token", _adds_bos(tokenizer), boolean, None))
    return vocab


def _dense_tokens(data: dict[str, Any], folder: Path) -> list[str]:
    by_id = {int(i): t for t, i in data["model"]["vocab"].items()}
    by_id.update({int(a["id"]): a["content"] for a in data.get("added_tokens") or []})
    tokens = [by_id.get(i) for i in range(len(by_id))]
    if None in tokens:
        raise ExportError(f"{folder}/tokenizer.json: token ids are not 0..{len(by_id) - 1}")
    return [str(t) for t in tokens]


def _token_types(
    data: dict[str, Any], tokens: list[str], known: KnownTokenizer, unk: str | None
) -> list[int]:
    """NORMAL, or CONTROL for special added tokens, USER_DEFINED for other added ones;
    SentencePiece also has its unknown token and byte tokens (`<0x0A>`)."""
    types = [NORMAL] * len(tokens)
    if known.ggml_model == "llama":
        types = [BYTE if _BYTE_TOKEN.fullmatch(t) else NORMAL for t in tokens]
    for added in data.get("added_tokens") or []:
        types[int(added["id"])] = CONTROL if added.get("special") else USER_DEFINED
    if known.ggml_model == "llama" and unk in tokens:
        types[tokens.index(unk)] = UNKNOWN
    return types


def _scores(tokens: list[str], merges: list[str]) -> list[float]:
    """SentencePiece scores that make llama.cpp merge as the run's BPE does: llama.cpp
    joins the adjacent pair whose joined token scores highest, the run's tokenizer the
    pair with the earliest merge, so a token scores minus the rank of its first merge."""
    rank: dict[str, int] = {}
    for index, merge in enumerate(merges):
        left, right = merge.split(" ", 1)
        rank.setdefault(left + right, index)
    return [-float(rank[t]) if t in rank else 0.0 for t in tokens]


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the run's tokenizer puts its bos token before text of its own accord."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos


def special_ids(tokenizer: PreTrainedTokenizerBase, end_of_turn_id: int) -> dict[str, int]:
    """The run's special token ids under their GGUF names (`tokenizer.ggml.<name>`)."""
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "unknown_token_id": tokenizer.unk_token_id,
        "padding_token_id": tokenizer.pad_token_id,
        "eot_token_id": end_of_turn_id,
    }
    return {key: int(value) for key, value in ids.items() if value is not None}
