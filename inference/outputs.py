"""What `generate` writes for each clip, shared by the split and the request modes (all files atomic):

    <name>.mp4                     the generated video with its audio muxed in
    <name>_side_by_side.mp4        generated | ground truth, with audio (sample.side_by_side, split mode)
    <name>_phase_attention.png     Fig. 4: text cross-attention mass per prompt block over time
    <name>_phase_attention.json    the per-frame numbers behind it + the in-window summary (attention_plot)
    phase_attention_summary.json   every clip's per-phase in-window share and the means (attention_plot)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text
from common.video_io import write_video
from inference.attention_map import clip_record, summarize_records
from models.contracts import ClipBatch

SUMMARY = "phase_attention_summary.json"


class ClipWriter:
    """Writes a batch's outputs into `out_dir`; collects the attention records for the summary."""

    def __init__(self, generator, out_dir: Path, side_by_side: bool, attention_plot: bool, write: bool = True):
        self.generator = generator
        self.out_dir = Path(out_dir)
        self.write = write  # False on the other ranks of `generate --parallel`: they compute, rank 0 writes
        if write:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.side_by_side, self.attention_plot = side_by_side, attention_plot
        self.fps, self.sample_rate = generator.cfg.data.fps, generator.cfg.data.sample_rate
        self.records: list[dict] = []

    def write_batch(self, names: list[str], batch: ClipBatch, num_frames: int, seeds: list[int],
                    ground_truth: np.ndarray | None = None) -> list[Path]:
        """Generate the batch and write every clip's files; returns the generated mp4 paths.

        ground_truth: uint8 (B, T, H, W, 3) for side-by-side videos (None in request mode)."""
        result = self.generator.generate(batch, num_frames, seeds)
        # every model call first (the attention pass too), then the files: under `generate --parallel` a
        # failed write on rank 0 can then never leave the ranks' collectives out of step
        attention = self._attention(result, seeds) if self.attention_plot else None
        audio = batch.audio.cpu().numpy()
        written = []
        for b, name in enumerate(names if self.write else []):
            path = self.out_dir / f"{name}.mp4"
            write_video(path, result.frames[b], fps=self.fps, audio=audio[b], sample_rate=self.sample_rate)
            written.append(path)
            if self.side_by_side and ground_truth is not None:
                both = np.concatenate([result.frames[b], ground_truth[b]], axis=2)  # (T, H, 2W, 3)
                write_video(self.out_dir / f"{name}_side_by_side.mp4", both, fps=self.fps, audio=audio[b],
                            sample_rate=self.sample_rate)
        if attention is not None and self.write:
            self._write_attention(names, batch, attention, seeds)
        return written

    def _attention(self, result, seeds):
        """(mass, padding, tokens, frame seconds, layers) of the Fig. 4 pass(es) for a generated batch."""
        from inference.windows import WindowedClips, windowed_text_attention
        if isinstance(result, WindowedClips):  # one pass per window, stitched at clip time
            return windowed_text_attention(self.generator, result)
        phase_mass, seconds = self.generator.text_attention(result.latents, result.cond, seeds)
        return phase_mass.mass, phase_mass.padding, phase_mass.tokens, seconds, phase_mass.layers

    def _write_attention(self, names, batch, attention, seeds) -> None:
        from inference.generate import ATTENTION_SEED_OFFSET, ATTENTION_T
        from inference.plots import plot_phase_attention
        mass, padding, tokens, seconds, layers = attention
        for b, name in enumerate(names):
            record = clip_record(name, mass[b], padding[b], tokens[b], seconds, batch.prompt[b], layers,
                                 ATTENTION_T, seeds[b] + ATTENTION_SEED_OFFSET)
            atomic_write_text(self.out_dir / f"{name}_phase_attention.json", json.dumps(record, indent=1))
            plot_phase_attention(record, self.out_dir / f"{name}_phase_attention.png")
            self.records.append(record)

    def finish(self) -> Path | None:
        """Write phase_attention_summary.json (when attention plots were made)."""
        if not self.records or not self.write:
            return None
        return atomic_write_text(self.out_dir / SUMMARY, json.dumps(summarize_records(self.records), indent=1))


def ground_truth_frames(batch: ClipBatch) -> np.ndarray:
    """A batch's video (B, T, 3, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3) (exact)."""
    from system.sampling import to_uint8_frames
    return to_uint8_frames(batch.video.transpose(1, 2))
