"""Rewards of the prompt enhancer: pure functions registered by name, each in [0, 1].

A reward is `fn(completion: str, example: EnhancerExample, tools: RewardTools) -> float`; `tools` carries
the two model-backed scorers (sentence embedding for visual similarity, a frozen LM's mean token
log-probability for fluency), so the functions stay pure and tests can pass stubs.
- format: the completion parses as an ActAvatar structured prompt (models.prompt.from_text) with
  windows inside the audio, ordered, non-overlapping (0.25 partial credit for the right line shapes);
- temporal: phase boundaries near speech boundaries / pause centres / emphasis peaks, phases on speech;
- visual: reference attributes and the requested speaking manner (mood) named in the base block, and its
  embedding similarity to the attributes; a bare copied attribute list (no sentence) is scaled down;
- specificity: each phase names a motion verb and a body part; repeated verbs across phases cost;
- faithfulness: every requested action appears, in its own phase, in the requested order;
- fluency: the frozen reference LM's mean token log-probability, squashed to [0, 1];
- anti_degeneration: length bounds, n-gram repetition, empty or duplicate phases, one phase spanning
  the whole clip although the audio has pauses, a pasted attribute list as the base block.
Invalid completions get 0 from every content reward, so format is never traded away.
Trade-off: lexicon rewards are easy to hack alone (notes: 'climbs climbs climbs' in 20 steps); the
specificity cap on repeated verbs, anti_degeneration and fluency are the counterweights, tested below.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from models.prompt import PromptError, StructuredPrompt, from_text
from rl.examples import EnhancerExample
from rl.lexicon import body_parts, mentions, motion_verbs, words


@dataclass
class RewardTools:
    embed: Callable[[list[str]], list[list[float]]] | None = None  # texts -> unit vectors
    logprob: Callable[[str], float] | None = None  # text -> mean token log-probability


RewardFn = Callable[[str, EnhancerExample, RewardTools], float]
REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str):
    def wrap(fn: RewardFn) -> RewardFn:
        REWARDS[name] = fn
        return fn
    return wrap


@lru_cache(maxsize=4096)
def parse(completion: str, duration: float) -> StructuredPrompt | None:
    try:
        prompt = from_text(completion.strip(), duration=duration, source="completion")
    except PromptError:
        return None
    return prompt if prompt.phases else None


_LINE_SHAPE = re.compile(r"^\s*phase\s*-?\s*\d+\s*\[", re.IGNORECASE | re.MULTILINE)


@register_reward("format")
def format_reward(completion: str, ex: EnhancerExample, tools: RewardTools) -> float:
    if parse(completion, ex.duration) is not None:
        return 1.0
    shaped = completion.lstrip().lower().startswith("base:") and _LINE_SHAPE.search(completion)
    return 0.25 if shaped else 0.0


@register_reward("temporal")
def temporal_reward(completion: str, ex: EnhancerExample, tools: RewardTools, sigma: float = 0.2) -> float:
    prompt = parse(completion, ex.duration)
    if prompt is None:
        return 0.0
    anchors = ex.timing.anchors()
    bounds = [t for p in prompt.phases for t in (p.start, p.end)]
    align = sum(math.exp(-(min(abs(b - a) for a in anchors) / sigma) ** 2) for b in bounds) / len(bounds)
    speech = sum(_overlap(p.start, p.end, ex.timing.segments) for p in prompt.phases)
    covered = sum(p.end - p.start for p in prompt.phases)
    return float(0.7 * align + 0.3 * (speech / covered if covered > 0 else 0.0))


def _overlap(start: float, end: float, segments) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in segments)


def _content_words(phrase: str) -> set[str]:
    return {w for w in words(phrase) if w not in {"a", "an", "the", "and", "in", "of", "to", "with"}}


def _listiness(base: str) -> bool:
    """A bare attribute list: many commas, no connecting verb or preposition."""
    tokens = set(words(base))
    glue = {"wearing", "wears", "with", "has", "stands", "standing", "is", "speaks", "speaking", "front", "who"}
    return base.count(",") + base.count(";") >= 3 and not tokens & glue


@register_reward("visual")
def visual_reward(completion: str, ex: EnhancerExample, tools: RewardTools) -> float:
    prompt = parse(completion, ex.duration)
    if prompt is None or not ex.attributes:
        return 0.0
    base_words = set(words(prompt.base))
    # The manner counts like one more attribute: without it GRPO learned to drop the mood (run A).
    mood = any(w.startswith(ex.mood) for w in base_words) if ex.mood else None
    hits = [_content_words(a) <= base_words for a in ex.attributes] + ([] if mood is None else [mood])
    named = sum(hits) / len(hits)
    score = named
    if tools.embed is not None:
        a, b = tools.embed([prompt.base, "; ".join(ex.attributes)])
        score = 0.6 * named + 0.4 * max(0.0, sum(x * y for x, y in zip(a, b)))
    return score * (0.3 if _listiness(prompt.base) else 1.0)


@register_reward("specificity")
def specificity_reward(completion: str, ex: EnhancerExample, tools: RewardTools) -> float:
    prompt = parse(completion, ex.duration)
    if prompt is None:
        return 0.0
    per_phase, verbs = [], []
    for p in prompt.phases:
        v = motion_verbs(p.text)
        verbs += v[:1]
        per_phase.append(0.5 * bool(v) + 0.5 * bool(body_parts(p.text)))
    distinct = len(set(verbs)) / len(verbs) if verbs else 0.0
    spam = sum(_verb_spam(p.text) for p in prompt.phases) / len(prompt.phases)
    return sum(per_phase) / len(per_phase) * (0.5 + 0.5 * distinct) * (1.0 - spam)


def _verb_spam(text: str) -> bool:
    """Verbs piled up in one phase ("raises raises lifts lifts"): a repeated verb or more than three."""
    verbs = [t for t in words(text) if motion_verbs(t)]
    return len(verbs) > 3 or len(set(verbs)) < len(verbs)


@register_reward("faithfulness")
def faithfulness_reward(completion: str, ex: EnhancerExample, tools: RewardTools) -> float:
    """Requested actions realised in order, one per phase: matched in-order / max(requested, phases)."""
    prompt = parse(completion, ex.duration)
    if prompt is None or not ex.actions:
        return 0.0
    matched, k = 0, 0
    for p in prompt.phases:
        if k < len(ex.actions) and mentions(p.text, ex.actions[k]):
            matched += 1
            k += 1
    return matched / max(len(ex.actions), len(prompt.phases))


def fluency_from_logprob(mean_logprob: float, centre: float = -3.0, width: float = 0.75) -> float:
    return 1.0 / (1.0 + math.exp(-(mean_logprob - centre) / width))


@register_reward("fluency")
def fluency_reward(completion: str, ex: EnhancerExample, tools: RewardTools) -> float:
    if tools.logprob is None or not completion.strip():
        return 0.0
    return fluency_from_logprob(tools.logprob(completion.strip()))


@register_reward("anti_degeneration")
def anti_degeneration_reward(completion: str, ex: EnhancerExample, tools: RewardTools,
                             min_words: int = 12, max_words: int = 140) -> float:
    tokens = words(completion)
    if not min_words <= len(tokens) <= max_words:
        return 0.0
    trigrams = list(zip(tokens, tokens[1:], tokens[2:]))
    score = min(1.0, 1.25 * len(set(trigrams)) / max(1, len(trigrams)))  # < 0.8 distinct trigrams costs
    prompt = parse(completion, ex.duration)
    if prompt is None:
        return score
    texts = [" ".join(words(p.text)) for p in prompt.phases]
    if any(len(t.split()) < 3 for t in texts):
        score *= 0.2                                    # empty / one-word phases
    if len(set(texts)) < len(texts):
        score *= 0.3                                    # the same phase twice
    if ex.timing.pauses and any(p.end - p.start >= 0.9 * ex.duration for p in prompt.phases) and len(ex.actions) > 1:
        score *= 0.3                                    # one phase over everything though several are asked
    if _listiness(prompt.base):
        score *= 0.3                                    # the attribute list pasted as the base block
    return score


def score(completion: str, ex: EnhancerExample, tools: RewardTools, names=None) -> dict[str, float]:
    """{reward name: value} for one completion."""
    return {name: float(REWARDS[name](completion, ex, tools)) for name in (names or REWARDS)}


def reward_weights(rl_cfg) -> dict[str, float]:
    """{reward name: weight} from the config's rl.weights section."""
    return {name: float(getattr(rl_cfg.weights, name)) for name in REWARDS}


def weighted_total(scores: dict[str, float], weights: dict[str, float]) -> float:
    total = sum(weights.get(n, 0.0) for n in scores)
    return sum(v * weights.get(n, 0.0) for n, v in scores.items()) / total if total else 0.0

