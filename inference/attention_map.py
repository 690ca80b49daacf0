"""ActAvatar Fig. 4: how much text cross-attention each latent frame gives to each prompt block.

Pure computation (no I/O). Input: the DiT's recorded attention, `AuxOutputs.text_attention[layer]` (B, L, Lt)
head-averaged probabilities (models/dit_layers.py TextCrossAttention._probs), with video tokens in the
DiT's frame-major order L = F' * h' * w' (`patch_embedding(x).flatten(2)` over (F', H', W'), F' = F / pt
latent frames after temporal patching), and the prompt's token tags `text_phase` (B, Lt) (0 = base block,
k = phase k) and `text_mask` (B, Lt) (False = padding).

    mass[b, f, k] = mean over layers, mean over the video tokens of frame f, of the sum of the attention
                    probabilities on the (unpadded) text tokens of block k

so with padding masked out of the softmax (`model.dit.mask_text_padding`, the default) the blocks of
one frame sum to 1; Wan's own setting (padding attended) leaves the rest in `padding`.

`phase_window_summary` reduces one clip to the numbers a sweep aggregates: for phase k, the share of its
attention mass (summed over frames) that falls on frames inside its requested window, next to the share of
frames inside that window (what a time-blind model would score).
Trade-off: every frame counts the same, including latent frame 0 (the clean reference frame, t = 0),
because it is part of the clip the prompt describes and attends to the text like any other frame.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass
class PhaseMass:
    """Per-frame text-attention mass of every prompt block, for a batch of clips."""

    mass: torch.Tensor  # (B, F, K + 1) float64: column 0 = base block, column k = phase k
    padding: torch.Tensor  # (B, F) float64: mass on padding tokens (0 when padding is masked)
    tokens: torch.Tensor  # (B, K + 1) long: unpadded text tokens of each block
    layers: list[int]  # the DiT blocks averaged over


def _layers(attention: Mapping[int, torch.Tensor] | Sequence[torch.Tensor]) -> tuple[list[int], list[torch.Tensor]]:
    if isinstance(attention, Mapping):
        keys = sorted(attention)
        return keys, [attention[k] for k in keys]
    return list(range(len(attention))), list(attention)


def frame_phase_mass(attention: Mapping[int, torch.Tensor] | Sequence[torch.Tensor], text_phase: torch.Tensor,
                     text_mask: torch.Tensor | None, num_frames: int, num_blocks: int | None = None) -> PhaseMass:
    """attention: {layer: (B, L, Lt)} (or a list); text_phase (B, Lt) long; text_mask (B, Lt) bool or None;
    num_frames: F', the latent frames after temporal patching (L must be a multiple of it);
    num_blocks: K + 1 (default: 1 + the largest phase id in the batch)."""
    layers, maps = _layers(attention)
    if not maps:
        raise ValueError("frame_phase_mass: no attention maps (was the DiT called with "
                         "Conditions.record_text_attention=True and return_aux=True?)")
    probs = torch.stack([m.detach().to(torch.float64) for m in maps]).mean(0)  # (B, L, Lt), mean over layers
    B, L, Lt = probs.shape
    if L % num_frames:
        raise ValueError(f"frame_phase_mass: {L} video tokens are not a whole number of {num_frames} frames")
    if text_phase.shape != (B, Lt):
        raise ValueError(f"frame_phase_mass: text_phase {tuple(text_phase.shape)} does not match the attention "
                         f"maps' (B, Lt) = {(B, Lt)}")
    mask = torch.ones(B, Lt, dtype=torch.bool) if text_mask is None else text_mask.detach().cpu().bool()
    phase = text_phase.detach().cpu().long()
    largest = int(phase[mask].max()) if mask.any() else 0
    K1 = largest + 1 if num_blocks is None else num_blocks
    if largest >= K1:
        raise ValueError(f"frame_phase_mass: phase id {largest} >= num_blocks {K1}")
    onehot = torch.nn.functional.one_hot(phase.clamp(0, K1 - 1), K1).to(torch.float64) * mask[..., None]  # (B, Lt, K1)
    probs = probs.cpu()
    per_token = probs @ onehot                                            # (B, L, K1)
    padding = (probs * (~mask)[:, None, :]).sum(-1)                      # (B, L)
    mass = per_token.view(B, num_frames, L // num_frames, K1).mean(2)    # frame-major token order
    padding = padding.view(B, num_frames, L // num_frames).mean(2)
    return PhaseMass(mass, padding, onehot.sum(1).round().long(), layers)


def patch_frame_seconds(latent_seconds: torch.Tensor, temporal_patch: int) -> torch.Tensor:
    """(F,) latent-frame centres in seconds -> (F / pt,) centres of the DiT's temporal patches."""
    F = latent_seconds.shape[0]
    if F % temporal_patch:
        raise ValueError(f"{F} latent frames are not a whole number of temporal patches of {temporal_patch}")
    return latent_seconds.to(torch.float64).view(F // temporal_patch, temporal_patch).mean(1)


def _share(values: torch.Tensor, inside: torch.Tensor) -> float | None:
    total = float(values.sum())
    return float(values[inside].sum()) / total if total > 0 else None


def _mean(values: torch.Tensor) -> float | None:
    return float(values.mean()) if values.numel() else None


def phase_window_summary(mass: torch.Tensor, frame_seconds: torch.Tensor,
                         windows: Sequence[tuple[float, float]]) -> list[dict]:
    """One clip: mass (F, K + 1), frame_seconds (F,), windows [(start, end)] in seconds for phases 1..K.

    Per phase: in_window_share = attention mass of phase k on frames with start <= t < end / its mass over
    all frames (None when the phase got no mass, e.g. a global/brief prompt has no phase tokens);
    window_frame_fraction = the share of frames inside the window (the time-blind baseline);
    mean_in_window / mean_outside_window = the phase's mean per-frame mass inside / outside it."""
    if mass.shape[1] < len(windows) + 1:
        raise ValueError(f"phase_window_summary: {mass.shape[1] - 1} phase columns for {len(windows)} windows")
    t = frame_seconds.to(torch.float64)
    rows = []
    for k, (start, end) in enumerate(windows, start=1):
        inside = (t >= start) & (t < end)
        values = mass[:, k].to(torch.float64)
        rows.append({"phase": k, "window": [float(start), float(end)],
                     "in_window_share": _share(values, inside),
                     "window_frame_fraction": float(inside.double().mean()),
                     "mean_in_window": _mean(values[inside]), "mean_outside_window": _mean(values[~inside])})
    return rows


def clip_record(name: str, mass: torch.Tensor, padding: torch.Tensor, tokens: torch.Tensor,
                frame_seconds: torch.Tensor, prompt: dict, layers: list[int], timestep: float,
                noise_seed: int) -> dict:
    """The JSON written next to a clip's plot: per-frame mass of every block plus the window summary.

    mass (F, K' + 1) and tokens (K' + 1,) may have more phase columns than this prompt (batch padding);
    prompt: the structured prompt in JSON form (base, phases with start/end/text[/action], duration)."""
    phases = prompt["phases"]
    windows = [(p["start"], p["end"]) for p in phases]
    missing = len(windows) + 1 - mass.shape[1]
    if missing > 0:  # global / brief prompts have no phase tokens: those phases got no attention at all
        mass = torch.cat([mass, mass.new_zeros(mass.shape[0], missing)], 1)
        tokens = torch.cat([tokens, tokens.new_zeros(missing)])
    summary = phase_window_summary(mass, frame_seconds, windows)
    duration = prompt.get("duration")
    blocks = [{"block": 0, "label": "base", "text": prompt["base"],
               "window": [0.0, float(duration) if duration else float(frame_seconds[-1])],
               "num_tokens": int(tokens[0]), "mass": [float(v) for v in mass[:, 0]]}]
    for k, (phase, row) in enumerate(zip(phases, summary), start=1):
        blocks.append({"block": k, "label": f"phase {k}", "text": phase["text"], "action": phase.get("action"),
                       "num_tokens": int(tokens[k]), "mass": [float(v) for v in mass[:, k]]}
                      | {key: value for key, value in row.items() if key != "phase"})
    record = {"name": name, "timestep": timestep, "noise_seed": noise_seed, "layers": layers,
              "frame_seconds": [float(v) for v in frame_seconds], "blocks": blocks}
    if float(padding.abs().max()) > 0:
        record["padding_mass"] = [float(v) for v in padding]
    return record


def summarize_records(records: Sequence[dict]) -> dict:
    """Across clips: every phase's in-window share and the means a sweep table reports."""
    rows = [{"name": r["name"], "block": b["block"], "action": b.get("action"),
             "in_window_share": b["in_window_share"], "window_frame_fraction": b["window_frame_fraction"]}
            for r in records for b in r["blocks"][1:]]
    shares = [row["in_window_share"] for row in rows if row["in_window_share"] is not None]
    fractions = [row["window_frame_fraction"] for row in rows if row["in_window_share"] is not None]
    return {"num_clips": len(records), "num_phases": len(rows),
            "mean_in_window_share": sum(shares) / len(shares) if shares else None,
            "mean_window_frame_fraction": sum(fractions) / len(fractions) if fractions else None,
            "phases": rows}
