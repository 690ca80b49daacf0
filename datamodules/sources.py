"""The data-source interface: what the core and the trainers need from any source of talking-avatar clips,
and the registry that `data.kind` picks from.

A `DataSource` turns one data config section into datasets of samples and collates them into the core's
`models.contracts.ClipBatch`; it also hands a codec that must be fitted its training frames (`fit_frames`)
and the learned-text ablation its prompt texts, so nothing in the core or the trainers knows where clips
come from. SynthAvatar (datamodules/synth_avatar.py) is the first implementation; a real-video source
registers itself the same way. Trade-off: the registry maps kinds to "module:Class" strings and imports a
source only when it is used, so listing the valid kinds (config validation at start-up) costs nothing and
a source's heavy dependencies load only for the runs that need them.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from common.errors import ConfigError
from models.contracts import ClipBatch, FitFrames

SPLITS = ("train", "val", "test")
# data.kind -> "module:Class"; configs/schema.py validates data.kind against these keys.
DATA_SOURCE_KINDS: dict[str, str] = {
    "synthavatar": "datamodules.synth_avatar:SynthAvatarSource",
    "real": "datamodules.real_video:RealVideoSource",
}


class DataSource(ABC):
    """One source of clips, configured by the `data` section (a DictConfig or the typed DataConfig)."""

    kind: str = ""
    region_names: tuple[str, ...] = ()  # the region masks its batches carry (SyncDreamer localisation loss)
    cacheable: bool = False  # clip i of a split is identical on every read (no random augmentation), so the
    #                          frozen encoders' outputs may be cached (train.condition_cache)

    def __init__(self, data_cfg):
        self.cfg = data_cfg

    @abstractmethod
    def prepare(self, split: str, progress: bool = True) -> None:
        """Make `split` readable (generate, index or cache it); run once, on rank 0."""

    @abstractmethod
    def dataset(self, split: str) -> Dataset:
        """The samples of a prepared split, in a fixed order (index i = clip i of the split)."""

    @abstractmethod
    def collate(self, samples: list) -> ClipBatch:
        """Samples of `dataset(split)` -> one ClipBatch."""

    @abstractmethod
    def fit_frames(self, max_clips: int = 0, progress: bool = True) -> FitFrames:
        """Training clips for a codec that must be fitted (0 = the whole train split)."""

    @abstractmethod
    def prompt_texts(self, split: str = "train", progress: bool = True) -> list[str]:
        """Every prompt rendering of a split (the learned text encoder builds its vocabulary from them)."""

    def check_regions(self, wanted: Sequence[str], key: str = "model.visual.regions") -> None:
        """A config that asks for region masks this source does not provide fails at start-up."""
        unknown = [r for r in wanted if r not in self.region_names]
        if unknown:
            raise ConfigError(f"{key}: region(s) {unknown} are not provided by data.kind={self.kind!r} "
                              f"(it provides {list(self.region_names) or 'no region masks'})")


def phase_table(prompts: Sequence[dict], action_id) -> dict[str, torch.Tensor]:
    """The phases of B prompts (JSON form) as ground-truth tensors, padded to the longest prompt:
    phase_windows (B, P, 2) seconds, phase_windows_norm (over each prompt's duration), phase_mask (B, P) of
    the real phases, phase_actions (B, P) = action_id(phase["action"]) (-1 for phases without one)."""
    P = max(len(p["phases"]) for p in prompts)
    B = len(prompts)
    windows, mask = torch.zeros(B, P, 2), torch.zeros(B, P, dtype=torch.bool)
    actions = torch.full((B, P), -1, dtype=torch.long)
    for b, prompt in enumerate(prompts):
        for k, p in enumerate(prompt["phases"]):
            windows[b, k] = torch.tensor([p["start"], p["end"]])
            actions[b, k] = action_id(p["action"]) if p.get("action") else -1
        mask[b, : len(prompt["phases"])] = True
    durations = torch.tensor([p.get("duration") or 1.0 for p in prompts])
    return {"phase_windows": windows, "phase_windows_norm": windows / durations[:, None, None],
            "phase_mask": mask, "phase_actions": actions}


def build_data_source(data_cfg) -> DataSource:
    """The DataSource of `data_cfg.kind`."""
    kind = data_cfg.kind
    if kind not in DATA_SOURCE_KINDS:
        raise ConfigError(f"data.kind: unknown data source {kind!r}; registered: {sorted(DATA_SOURCE_KINDS)}")
    module, name = DATA_SOURCE_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)(data_cfg)
