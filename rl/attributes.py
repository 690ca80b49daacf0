"""Reference-image attributes for the prompt enhancer, behind one interface.

`AttributeSource.__call__(image) -> list[str]` gives short attribute phrases ("short black hair"). On
SynthAvatar they come from the clip's ground-truth identity (`ground_truth_attributes`); on real data a
vision-language model loaded from a local directory describes the reference frame
(`VisionLanguageAttributes`). Trade-off: a VLM's free text is split on commas/semicolons, so its
phrases are less regular than ground truth; the visual-relevance reward only needs their words.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from common.local_models import load_local, local_model_dir

VLM_QUESTION = ("List the visible attributes of the person and the background in this image as short "
                "comma-separated phrases (skin, hair, clothing, background).")


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


class VisionLanguageAttributes:
    """A local image-text-to-text model (e.g. a Qwen2.5-VL / SmolVLM directory) asked for attributes."""

    def __init__(self, path: str | Path, max_new_tokens: int = 64):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        what = "vision-language attribute model"
        directory = local_model_dir(path, what, "rl.vlm_path")
        self.processor = load_local(directory, what, AutoProcessor.from_pretrained, "processor")
        self.model = load_local(directory, what, AutoModelForImageTextToText.from_pretrained).eval()
        self.max_new_tokens = max_new_tokens

    def __call__(self, image: np.ndarray) -> list[str]:
        """image (H, W, 3) uint8 -> attribute phrases."""
        import torch
        from PIL import Image
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": VLM_QUESTION}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(text=text, images=[Image.fromarray(image)], return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        answer = self.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return split_attribute_text(answer)


def split_attribute_text(answer: str) -> list[str]:
    """'short black hair, red shirt; a plain wall.' -> ['short black hair', 'red shirt', 'a plain wall']."""
    parts = [p.strip(" .\n\t-*") for chunk in answer.split(";") for p in chunk.split(",")]
    return [p for p in parts if p]
