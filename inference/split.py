"""Generate a data split's held-out clips: clip_<index>.mp4 with the clip's audio muxed in.

File names follow `main.py evaluate --videos` (evaluation/commands.py), so a generated directory is
scored directly. Conditions come from the split (reference = the clip's first frame, its audio and
structured prompt, or a caller's prompt per clip, e.g. rl/downstream.py); the ground-truth video is never
given to the model. Optional outputs follow the
config's `sample` section (side_by_side, attention_plot; see inference/outputs.py).
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from inference.generate import Generator
from inference.outputs import ClipWriter, ground_truth_frames


def clip_name(index: int) -> str:
    return f"clip_{index:05d}.mp4"


def generate_split(cfg, out_dir: Path, split: str = "test", weights=None, num_clips: int = 0,
                   progress: bool = True, generator: Generator | None = None, *,
                   side_by_side: bool | None = None, attention_plot: bool | None = None,
                   prompts: list[dict] | None = None, write: bool = True) -> list[Path]:
    """Generate the first `num_clips` (0 = all) clips of `split` into out_dir; returns the clip_*.mp4 paths.
    side_by_side / attention_plot: None = sample.side_by_side / sample.attention_plot of the config.
    prompts: one structured prompt (JSON form) per clip instead of the split's own, None = the split's.
    write: False on the other ranks of `generate --parallel` (they compute the same clips, rank 0 writes)."""
    generator = generator or Generator(cfg, weights, progress)
    s = generator.cfg.sample
    writer = ClipWriter(generator, out_dir, s.side_by_side if side_by_side is None else side_by_side,
                        s.attention_plot if attention_plot is None else attention_plot, write=write)
    source = generator.system.source
    source.prepare(split, progress)
    dataset = source.dataset(split)
    count = min(num_clips, len(dataset)) if num_clips else len(dataset)
    if prompts is not None and len(prompts) < count:
        raise ValueError(f"generate_split: {len(prompts)} prompts for {count} clips of '{split}'")
    loader = DataLoader(Subset(dataset, range(count)), batch_size=s.batch_size, collate_fn=source.collate)
    written = []
    with tqdm(total=count, desc=f"generating {split}", unit="clip", disable=not progress) as bar:
        for batch in loader:
            indices = batch.index.tolist()
            names = [clip_name(i)[: -len(".mp4")] for i in indices]
            if prompts is not None:
                batch = batch.replace(prompt=[prompts[i] for i in indices])
            truth = ground_truth_frames(batch) if writer.side_by_side else None
            written += writer.write_batch(names, batch, batch.num_frames,
                                          [s.seed * 100_003 + i for i in indices], truth)
            bar.update(len(indices))
    writer.finish()
    return written
