"""Tokenizers with one call shape: `tok(texts, context_length) -> (ids [B,W] long, mask [B,W] bool)`.

- `HFTokenizer`: a Hugging Face tokenizer folder (CLIP BPE from a checkpoint, MiniLM's WordPiece).
- `WordTokenizer`: deterministic word-level vocabulary built from captions and saved as JSON, for
  text towers trained from scratch.
- `HashingTokenizer`: words hashed into a fixed id range; needs no vocabulary (random-tiny).

Every tokenizer pads with id 0 after the last real token and ends each text with its EOT token;
the CLIP-style ones give EOT the highest id of the vocabulary, so "argmax of ids" finds it too.
"""

from __future__ import annotations

import abc
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from tvr.atomic import atomic_write_json
from tvr.errors import TvrError

WORD_TOKENIZER_FORMAT = "tvr-word-tokenizer"
_WORD_RE = re.compile(r"\w+|[^\w\s]")
SPECIAL_TOKENS = ("<pad>", "<unk>", "<sot>")  # ids 0, 1, 2; "<eot>" is always the last id
EOT_TOKEN = "<eot>"


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, the unit of the word-level tokenizers."""
    return _WORD_RE.findall(text.casefold())


class Tokenizer(abc.ABC):
    """Texts → padded id matrix and mask (True = real token, including SOT/EOT)."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Changes when the id mapping changes (stored with features/checkpoints)."""

    @abc.abstractmethod
    def encode_ids(self, text: str) -> list[int]:
        """Ids of one text including its start/end tokens, not truncated."""

    @property
    @abc.abstractmethod
    def eot_id(self) -> int: ...

    def __call__(self, texts: Sequence[str] | str, context_length: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError("context_length must be >= 2")
        ids = torch.zeros(len(texts), context_length, dtype=torch.long)
        mask = torch.zeros(len(texts), context_length, dtype=torch.bool)
        for row, text in enumerate(texts):
            seq = self.encode_ids(text)
            if len(seq) > context_length:  # keep the EOT token: the text tower pools there
                seq = seq[: context_length - 1] + [self.eot_id]
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = True
        return ids, mask


class WordTokenizer(Tokenizer):
    """Word-level vocabulary: ids 0..2 = pad/unk/sot, then words by frequency, last id = EOT."""

    def __init__(self, words: Sequence[str]) -> None:
        self.tokens = [*SPECIAL_TOKENS, *words, EOT_TOKEN]
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("WordTokenizer vocabulary has duplicate or reserved tokens")
        self._ids = {tok: i for i, tok in enumerate(self.tokens)}
        self._version = f"word-{zlib.crc32(json.dumps(self.tokens).encode()):08x}-{len(self.tokens)}"

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_words: int | None = None) -> WordTokenizer:
        """Vocabulary from captions; ties in frequency are broken alphabetically (deterministic)."""
        counts = Counter(w for text in texts for w in split_words(text))
        reserved = {*SPECIAL_TOKENS, EOT_TOKEN}
        ranked = sorted((w for w, c in counts.items() if c >= min_count and w not in reserved), key=lambda w: (-counts[w], w))
        return cls(ranked[:max_words] if max_words is not None else ranked)

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TvrError(f"tokenizer file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise TvrError(f"tokenizer file {path} is not readable JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != WORD_TOKENIZER_FORMAT:
            raise TvrError(f"{path} is not a tvr word tokenizer (field 'format' != {WORD_TOKENIZER_FORMAT!r})")
        tokens = doc.get("tokens")
        if (
            not isinstance(tokens, list)
            or tokens[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS)
            or tokens[-1:] != [EOT_TOKEN]
        ):
            raise TvrError(f"{path}: field 'tokens' must list the special tokens first and {EOT_TOKEN!r} last")
        return cls(tokens[len(SPECIAL_TOKENS) : -1])

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"format": WORD_TOKENIZER_FORMAT, "version": 1, "tokens": self.tokens})

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def version(self) -> str:
        return self._version

    @property
    def eot_id(self) -> int:
        return len(self.tokens) - 1

    def encode_ids(self, text: str) -> list[int]:
        unk = self._ids["<unk>"]
        return [self._ids["<sot>"], *(self._ids.get(w, unk) for w in split_words(text)), self.eot_id]


class HashingTokenizer(Tokenizer):
    """Words hashed (CRC32) into ids 3..vocab_size-2; no vocabulary to build or store."""

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 5:
            raise ValueError("HashingTokenizer needs vocab_size >= 5")
        self._vocab_size = vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def version(self) -> str:
        return f"hash-crc32-{self._vocab_size}"

    @property
    def eot_id(self) -> int:
        return self._vocab_size - 1

    def encode_ids(self, text: str) -> list[int]:
        buckets = self._vocab_size - 4
        words = [3 + zlib.crc32(w.encode("utf-8")) % buckets for w in split_words(text)]
        return [2, *words, self.eot_id]


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer folder, loaded offline (CLIP BPE, BERT WordPiece, …)."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.path = Path(path)
        try:
            self._tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TvrError(f"cannot load a tokenizer from {self.path}: {exc}") from None
        if self._tok.eos_token_id is not None:
            self._eot = int(self._tok.eos_token_id)
        elif self._tok.sep_token_id is not None:
            self._eot = int(self._tok.sep_token_id)
        else:
            raise TvrError(f"tokenizer in {self.path} has neither an end-of-text nor a [SEP] token")

    @property
    def hf_tokenizer(self):  # noqa: ANN201 - transformers type
        return self._tok

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def version(self) -> str:
        return f"hf-{type(self._tok).__name__}-{len(self._tok)}"

    @property
    def eot_id(self) -> int:
        return self._eot

    def encode_ids(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=True)["input_ids"])


def has_hf_tokenizer(directory: str | Path) -> bool:
    """Whether a folder holds Hugging Face tokenizer files."""
    d = Path(directory)
    return d.is_dir() and (
        (d / "tokenizer.json").is_file() or (d / "vocab.json").is_file() or (d / "vocab.txt").is_file()
    )


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A word-tokenizer JSON file or a Hugging Face tokenizer folder."""
    p = Path(path)
    if p.is_file():
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict) and doc.get("format") == WORD_TOKENIZER_FORMAT:
            return WordTokenizer.load(p)
        if has_hf_tokenizer(p.parent):
            return HFTokenizer(p.parent)
        raise TvrError(f"{p} is neither a tvr word tokenizer nor inside a Hugging Face tokenizer folder")
    if has_hf_tokenizer(p):
        return HFTokenizer(p)
    raise TvrError(f"no tokenizer at {p} (expected a word-tokenizer .json or a folder with tokenizer.json/vocab files)")
