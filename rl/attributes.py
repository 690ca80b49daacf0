"""Reference-image attributes for the prompt enhancer, behind one interface.

`AttributeSource.__call__(image) -> list[str]` gives short attribute phrases ("short black hair"). On
SynthAvatar they come from the clip's ground-truth identity (`ground_truth_attributes`); on real data a
vision-language model loaded from a local directory describes the reference frame
(`VisionLanguageAttributes`). Trade-off: a VLM's free text is split on commas/semicolons, so its
phrases are less regular than ground truth; the visual-relevance reward only needs their words.
"""
from __future__ import annotations

from typing import Protocol

from common.vlm import VLM_QUESTION, VisionLanguageAttributes, split_attribute_text  # noqa: F401 (re-exported)


class AttributeSource(Protocol):
    def __call__(self, image) -> list[str]: ...


def ground_truth_attributes(identity: dict) -> list[str]:
    """SynthAvatar identity -> phrases: skin, hair, eyes, top, background (the background last)."""
    from synthavatar.identity import BACKGROUND_PATTERNS, hair_phrase, top_phrase
    n = identity["names"]
    bg = identity["background"]
    wall = {"plain": f"a plain {n['bg_a']} wall", "gradient": f"a {n['bg_a']} to {n['bg_b']} gradient wall"}.get(
        bg, f"a {BACKGROUND_PATTERNS.get(bg, bg)} {n['bg_a']} and {n['bg_b']} wall")
    return [f"{n['skin']} skin", hair_phrase(identity), f"{n['eyes']} eyes", f"a {top_phrase(identity)}", wall]


class GroundTruthAttributes:
    """SynthAvatar: `image` is the clip spec's identity dict."""

    def __call__(self, identity: dict) -> list[str]:
        return ground_truth_attributes(identity)
