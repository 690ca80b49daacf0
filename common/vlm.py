"""A local vision-language model asked for a person's visible attributes (short phrases), shared by the
prompt enhancer's visual-relevance reward (rl/attributes.py) and prep's annotate stage (realvideo/), so it
sits below both. Loaded from a local HF directory only (image-text-to-text: a Qwen2.5-VL / SmolVLM folder).
Trade-off: free text is split on commas / semicolons, so phrases are less regular than ground truth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.local_models import load_local, local_model_dir

VLM_QUESTION = ("List the visible attributes of the person and the background in this image as short "
                "comma-separated phrases (skin, hair, clothing, background).")


class VisionLanguageAttributes:
    """A local image-text-to-text model (e.g. a Qwen2.5-VL / SmolVLM directory) asked for attributes."""

    def __init__(self, path: str | Path, max_new_tokens: int = 64, setting: str = "rl.vlm_path"):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        what = "vision-language attribute model"
        directory = local_model_dir(path, what, setting)
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
