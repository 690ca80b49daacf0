"""Plot of ActAvatar Fig. 4 from a clip record (inference/attention_map.py clip_record): text cross-attention
mass of every prompt block over time, one line per block, each phase's requested window shaded in the
line's colour. Matplotlib with the Agg backend (no display); the PNG is written atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.atomic import atomic_write

BASE_COLOUR = "0.35"  # grey: the base block holds for the whole clip, so it gets no window
PHASE_COLOURS = plt.get_cmap("tab10").colors
LABEL_CHARS = 42


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def phase_colour(k: int):
    """Colour of phase k (1-based) in the plot."""
    return PHASE_COLOURS[(k - 1) % len(PHASE_COLOURS)]


def plot_phase_attention(record: dict, path: str | Path, title: str | None = None) -> Path:
    """Write the Fig. 4-style PNG for one clip record to `path` (atomic); returns the path."""
    t = record["frame_seconds"]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    try:
        for block in record["blocks"]:
            k = block["block"]
            if k == 0:
                ax.plot(t, block["mass"], color=BASE_COLOUR, linestyle="--", marker=".", label="base")
                continue
            colour = phase_colour(k)
            start, end = block["window"]
            ax.axvspan(start, end, color=colour, alpha=0.15, linewidth=0)
            ax.plot(t, block["mass"], color=colour, marker=".",
                    label=f"phase {k} [{start:g}–{end:g}s]: {_short(block['text'])}")
        if "padding_mass" in record:
            ax.plot(t, record["padding_mass"], color="0.7", linestyle=":", label="padding")
        duration = record["blocks"][0]["window"][1]
        ax.set_xlim(0, max(duration, t[-1]))
        ax.set_ylim(0, 1.02 * max(1e-6, max(max(b["mass"]) for b in record["blocks"])))
        ax.set_xlabel("time (s)")
        ax.set_ylabel("text cross-attention mass")
        layers = record["layers"]
        ax.set_title(title or f"{record['name']}: attention per prompt block (t = {record['timestep']:g}, "
                              f"mean of {len(layers)} layer{'s' if len(layers) != 1 else ''})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
