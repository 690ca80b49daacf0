"""SynthAvatar split design: what the test split holds out from train.

- Identities: every clip samples a fresh identity from a split-specific seed stream, and the test split
  uses (hair style, clothes style) combinations that never occur in train or val (HELD_OUT_LOOKS).
- Action combinations: a fixed set of unordered action pairs (HELD_OUT_PAIRS) never co-occurs in a
  train/val clip; every test clip has >= 2 phases and contains at least one held-out pair, so no test
  clip's set of actions was seen in training.
- Paraphrases: train/val phase texts use each action's first paraphrases; test uses the last one only.
Val is in-distribution (train rules, unseen identities). Everything is a pure function of the data seed.
"""
from __future__ import annotations

import itertools

import numpy as np

from synthavatar.actions import ACTION_NAMES
from synthavatar.identity import CLOTHES_STYLES, HAIR_STYLES

SPLITS = ("train", "val", "test")
SPLIT_ID = {name: i for i, name in enumerate(SPLITS)}
_DESIGN_SEED = 20260  # fixed: the held-out sets must not move when the data seed changes


def _held_out_pairs(fraction=0.15) -> frozenset:
    pairs = list(itertools.combinations(sorted(ACTION_NAMES), 2))
    rng = np.random.default_rng(_DESIGN_SEED)
    chosen = rng.choice(len(pairs), size=max(1, int(round(fraction * len(pairs)))), replace=False)
    return frozenset(frozenset(pairs[i]) for i in chosen)


def _held_out_looks(count=4) -> tuple:
    looks = list(itertools.product(HAIR_STYLES, CLOTHES_STYLES))
    rng = np.random.default_rng(_DESIGN_SEED + 1)
    return tuple(looks[i] for i in sorted(rng.choice(len(looks), size=count, replace=False)))


HELD_OUT_PAIRS = _held_out_pairs()
HELD_OUT_LOOKS = _held_out_looks()
TRAIN_LOOKS = tuple(l for l in itertools.product(HAIR_STYLES, CLOTHES_STYLES) if l not in HELD_OUT_LOOKS)


def has_held_out_pair(actions) -> bool:
    return any(frozenset(p) in HELD_OUT_PAIRS for p in itertools.combinations(set(actions), 2))


def looks_for(split: str) -> tuple:
    return HELD_OUT_LOOKS if split == "test" else TRAIN_LOOKS


def sample_actions(rng: np.random.Generator, split: str, count: int) -> list[str]:
    """`count` distinct actions obeying the split's combination rule (rejection sampling)."""
    if split == "test":
        count = max(count, 2)
        # sorted(): iterating a frozenset of str follows PYTHONHASHSEED, which differs per process
        a, b = sorted(sorted(HELD_OUT_PAIRS, key=sorted)[int(rng.integers(len(HELD_OUT_PAIRS)))])
        rest = [n for n in ACTION_NAMES if n not in (a, b)]
        actions = [a, b] + list(rng.choice(rest, size=count - 2, replace=False))
        return [str(x) for x in rng.permutation(actions)]
    for _ in range(1000):
        actions = [str(x) for x in rng.choice(ACTION_NAMES, size=count, replace=False)]
        if not has_held_out_pair(actions):
            return actions
    raise RuntimeError(f"could not sample {count} actions without a held-out pair")


def paraphrase_pool(action, split: str) -> tuple[str, ...]:
    return action.test_paraphrases if split == "test" else action.train_paraphrases
