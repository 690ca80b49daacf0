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


class VisionLanguageModel:
    """A local image-text-to-text model (e.g. a Qwen2.5-VL / SmolVLM directory): images + a question -> text."""

    def __init__(self, path: str | Path, max_new_tokens: int = 64, setting: str = "rl.vlm_path",
                 what: str = "vision-language attribute model"):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        directory = local_model_dir(path, what, setting)
        self.processor = load_local(directory, what, AutoProcessor.from_pretrained, "processor")
        self.model = load_local(directory, what, AutoModelForImageTextToText.from_pretrained).eval()
        self.max_new_tokens = max_new_tokens

    def ask(self, images: list[np.ndarray], question: str) -> str:
        """uint8 (H, W, 3) images (one, or a clip's frames in order) and a question -> the greedy answer."""
        import torch
        from PIL import Image
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = self.processor(text=text, images=[Image.fromarray(i) for i in images], return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


class VisionLanguageAttributes(VisionLanguageModel):
    """The model asked for a person's attributes in one image."""

    def __call__(self, image: np.ndarray) -> list[str]:
        """image (H, W, 3) uint8 -> attribute phrases."""
        return split_attribute_text(self.ask([image], VLM_QUESTION))


def split_attribute_text(answer: str) -> list[str]:
    """'short black hair, red shirt; a plain wall.' -> ['short black hair', 'red shirt', 'a plain wall']."""
    parts = [p.strip(" .\n\t-*") for chunk in answer.split(";") for p in chunk.split(",")]
    return [p for p in parts if p]
