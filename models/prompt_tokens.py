"""Structured prompt -> text tokens that each carry a phase id and a normalised time window (ActAvatar PACA).

ActAvatar (Sec. "Phase-Aware Cross-Attention") decomposes the prompt into P = {P_base, P_1..P_K}; the
DiT adds a zero-initialised phase embedding e_k to every text token of phase k and lets frames attend
to phase k's tokens inside its window T_k. This module produces what the DiT reads (`TextBatch.to_cond`, the text fields of
models.contracts.Conditions):
text (B, L, D), text_mask (B, L), text_phase (B, L) (0 = base block or padding, k = phase k, 1-based),
text_window (B, L, 2) (normalised [start, end]; [0, 1] for base tokens, [0, 0] for padding) and
text_is_phase (B, L).

How tokens get their block: the prompt is rendered ONCE in its canonical text form (`to_text`: a
"Base: ..." line then one "Phase-k [s–e]: ..." line per phase) and encoded in one pass; every token is
assigned to the line holding the first non-whitespace character at or after its start (so a
SentencePiece "▁" that covers the line break joins the word that follows it), using the tokenizer's
character offsets; special tokens (CLS/SEP/EOS) belong to the base block.
Trade-off against encoding each block separately: one pass lets every token see the other blocks
(a contextual encoder reads "waves" in the light of who waves), keeps the paper's prompt format, and
costs one forward pass instead of K + 1; the price is that a token's state depends on its neighbours,
and that one token budget is shared, so truncation can starve the last phase. That is never silent:
a phase left with zero tokens is an error, a phase cut short is a warning.
The "global" (flat prompt, paper's baseline) and "brief" (stage-1 caption) modes have no blocks: every
token is a base token (phase 0, window [0, 1]).
"""
from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.contracts import Conditions
from models.prompt import StructuredPrompt, from_json, normalized_windows, to_brief, to_global, to_text
from models.text_encoders import PROMPT_MODES, Offset, TextEncoder

BASE_WINDOW = (0.0, 1.0)  # the base block holds for the whole clip


@dataclass
class TextBatch:
    """Encoded prompts with per-token structure; all tensors share the leading (B, L)."""

    hidden: torch.Tensor  # (B, L, D) float, zero at padding
    mask: torch.Tensor  # (B, L) bool, True = real token
    phase: torch.Tensor  # (B, L) long: 0 = base/padding, k = phase k (1-based)
    window: torch.Tensor  # (B, L, 2) float: normalised [start, end]
    is_phase: torch.Tensor  # (B, L) bool = phase > 0

    def to_cond(self) -> Conditions:
        """The text part of the DiT's conditions."""
        return Conditions(text=self.hidden, text_mask=self.mask, text_phase=self.phase,
                          text_window=self.window, text_is_phase=self.is_phase)


def render_structured(prompt: StructuredPrompt) -> tuple[str, list[int]]:
    """The text form and the character index where each block's line starts (block 0 = base)."""
    text = to_text(prompt)  # one line per block: to_text turns line breaks inside a text into spaces
    starts, position = [], 0
    for line in text.split("\n"):
        starts.append(position)
        position += len(line) + 1
    if len(starts) != len(prompt.phases) + 1:  # guards the one-block-per-line contract of to_text
        raise ValueError(f"render_structured: {len(starts)} lines for {len(prompt.phases) + 1} blocks")
    return text, starts


def assign_blocks(text: str, offsets: Sequence[Offset], block_starts: Sequence[int]) -> list[int]:
    """Block index (0 = base, k = phase k) of every token; special tokens (offset None) -> 0."""
    blocks = []
    for offset in offsets:
        if offset is None:
            blocks.append(0)
            continue
        anchor = offset[0]
        while anchor < len(text) and text[anchor].isspace():
            anchor += 1  # whitespace-only or zero-width tokens belong to the word that follows
        blocks.append(bisect.bisect_right(block_starts, min(anchor, max(len(text) - 1, 0))) - 1)
    return blocks


def _check_prompts(prompts: Sequence[StructuredPrompt], mode: str) -> None:
    if mode not in PROMPT_MODES:
        raise ValueError(f"encode_prompts: unknown prompt mode {mode!r}; use one of {', '.join(PROMPT_MODES)}")
    if not prompts:
        raise ValueError("encode_prompts: empty list of prompts")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, StructuredPrompt):
            raise TypeError(f"encode_prompts: prompt {i} is a {type(prompt).__name__}, expected a StructuredPrompt "
                            "(use structured_prompts() for the JSON dicts of a batch)")
        if mode == "structured" and prompt.duration is None:
            raise ValueError(f"encode_prompts: prompt {i} has no duration, so its phase windows cannot be "
                             "normalised (set StructuredPrompt.duration)")


def _check_phase_tokens(i: int, prompt: StructuredPrompt, phase_ids: torch.Tensor, truncated: bool,
                        text: str, encoder: TextEncoder, limit: int) -> None:
    """Raises when truncation left a phase without tokens; warns when it only cut one short."""
    counts = torch.bincount(phase_ids, minlength=len(prompt.phases) + 1)  # (K + 1,)
    empty = [k for k in range(1, len(prompt.phases) + 1) if counts[k] == 0]
    if empty:
        k = empty[0]
        raise ValueError(
            f"encode_prompts: prompt {i}: phase {k} ({prompt.phases[k - 1].text!r:.50}) has no tokens left after "
            f"truncation to max_tokens={limit} (the prompt needs {encoder.num_tokens(text)}); raise "
            "text.max_tokens or shorten the base block")
    if truncated:
        last = int(phase_ids.max()) if len(phase_ids) else 0
        warnings.warn(f"encode_prompts: prompt {i} truncated to max_tokens={limit}: "
                      f"{'phase ' + str(last) if last else 'the base block'} is cut short", stacklevel=3)


def encode_prompts(prompts: Sequence[StructuredPrompt], encoder: TextEncoder, mode: str = "structured",
                   max_tokens: int | None = None) -> TextBatch:
    """Encodes `prompts` in the rendering `mode` and tags every token with its phase id and window."""
    _check_prompts(prompts, mode)
    limit = max_tokens or encoder.max_tokens
    if mode == "structured":
        rendered = [render_structured(p) for p in prompts]
    else:
        render = to_global if mode == "global" else to_brief
        rendered = [(render(p), [0]) for p in prompts]  # a single block: everything is base
    encoded = encoder.encode([text for text, _ in rendered], max_tokens=limit)
    B, L = encoded.mask.shape
    phase = torch.zeros(B, L, dtype=torch.long, device=encoded.mask.device)
    window = torch.zeros(B, L, 2, device=encoded.mask.device)  # padding keeps the empty window [0, 0]
    for i, (prompt, (text, starts)) in enumerate(zip(prompts, rendered)):
        n = len(encoded.offsets[i])
        ids = torch.tensor(assign_blocks(text, encoded.offsets[i], starts), dtype=torch.long)  # (n,)
        windows = [BASE_WINDOW] + (normalized_windows(prompt) if mode == "structured" else [])
        phase[i, :n] = ids
        window[i, :n] = torch.tensor(windows, dtype=window.dtype)[ids]  # (n, 2)
        if mode == "structured":
            _check_phase_tokens(i, prompt, ids, encoded.truncated[i], text, encoder, limit)
        elif encoded.truncated[i]:
            warnings.warn(f"encode_prompts: prompt {i} ({mode}) truncated to max_tokens={limit}", stacklevel=2)
    return TextBatch(encoded.hidden, encoded.mask, phase, window, phase > 0)


def structured_prompts(json_prompts: Sequence[dict]) -> list[StructuredPrompt]:
    """The validated prompts of a collated batch (`ClipBatch.prompt`, JSON form)."""
    return [from_json(p, source=f"batch.prompt[{i}]") for i, p in enumerate(json_prompts)]
