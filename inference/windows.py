"""Audio of any length: chained windows of the trained clip length (issue 17; the long-video scheme of
OmniAvatar / InfiniteTalk / Wan2.2-S2V, on ActAvatar's image-to-video model).

A request of N frames longer than `sample.window_frames` (default: the training clip) is generated as
windows of T' frames (the codec-valid window length, 100 -> 97) that overlap by M = `sample.motion_frames`:

- audio features are computed once over the whole track (ConditionEncoder.encode_audio(wave, N)) and
  window k reads frames [s_k, s_k + T'), so a window's edges see the same features as its neighbours;
- the prompt is cut to each window's time (models.prompt.cut_window): a phase cut by a boundary continues
  in the next window with the same text and its remaining time; a window inside a gap between phases
  gets the base block alone (what the idle stretches of a training clip see);
- window 0 starts from the encoded reference image, exactly as a one-window generation; window k > 0
  starts from motion frames: the video's frames [s_k, s_k + M) generated so far are re-encoded and kept
  clean as its first latents (M = 1 + 4j -> 1 + j latents with Wan's causal codec), and the video keeps
  the earlier pixels for them and appends the rest; window starts advance by T' - M, and the last
  window is pulled back to end at frame N, so every window has the length the model was trained on;
- `sample.window_reference`: what window k > 0 takes as "the reference" (the reference embedding, the
  motion prediction's base, the visual adapter): `image` (default) = the reference image's latent, so
  identity stays anchored although frame 0 and the reference then differ, which training never showed;
  `motion` = its own first frame, as in training where the reference is frame 0. On the demo model
  (bench/results/long_audio_cpu.md, 6 requests of 12-20 s, 1 motion frame) `image` keeps Sync-C 0.49 and
  CSIM 0.88, as high as one long window, where `motion` falls to 0.25 / 0.84 (generated frames become the
  reference and lip motion fades); seams are alike (1.07x vs 1.05x the clip's other latent-frame steps);
- noise of window k is seeded with seed + k * WINDOW_SEED_STRIDE (window 0 = the one-window seed).

Trade-off: M = 1 is the only prefix the model saw in training (one clean frame); longer prefixes carry the
motion across the seam but are out of distribution for a model not trained with them. Measured on the demo
model (bench/results/long_audio_cpu.md, 6 requests, one seed), against the clip's other latent-frame steps:
M = 5 (two clean latents, the default) 1.07x frame difference / 1.08x probe pose jump at the seams, Sync-C
0.50; M = 1: 1.07x / 1.18x, Sync-C 0.49 -- a small difference; M = 5 costs 4 of each window's 97 frames.
The pulled-back last window recomputes up to T' - M frames of its predecessor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from common.errors import ConfigError
from models.contracts import ClipBatch, Conditions
from models.prompt import cut_window, to_json
from models.prompt_tokens import structured_prompts
from system.sampling import sample_after, to_uint8_frames

WINDOW_SEED_STRIDE = 1_000_033  # noise seed of window k = clip seed + k * this


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of an N-frame clip start, and which output frames each one contributes."""

    total: int  # N video frames
    length: int  # T' frames per window
    motion: int  # M frames carried from the video so far into the next window
    starts: tuple[int, ...]

    def span(self, k: int) -> tuple[int, int]:
        """Output frames [a, b) window k contributes: after its motion frames, until the next window's."""
        a = 0 if k == 0 else self.starts[k] + self.motion
        b = self.total if k == len(self.starts) - 1 else self.starts[k + 1] + self.motion
        return a, b

    @property
    def boundaries(self) -> list[int]:
        """The first frame each window k > 0 contributes (where a seam could show)."""
        return [self.span(k)[0] for k in range(1, len(self.starts))]


def window_limit(cfg) -> int:
    """Longest clip generated as one window: sample.window_frames, default the training clip's frames."""
    return int(cfg.sample.window_frames) or int(round(cfg.data.duration * cfg.data.fps))


def window_length(cfg, codec) -> tuple[int, int]:
    """(T', M) from cfg.sample, checked against the codec: T' = the codec-valid window length, M valid for
    the codec (1 + 4j) and leaving at least one new latent frame per window."""
    s = cfg.sample
    length = codec.valid_num_frames(window_limit(cfg))
    motion = int(s.motion_frames)
    if codec.valid_num_frames(motion) != motion:
        valid = [codec.num_video_frames(n) for n in range(1, 4)]
        raise ConfigError(f"sample.motion_frames={motion} is not a length the codec encodes exactly "
                         f"(valid: {', '.join(map(str, valid))}, ...)")
    if codec.num_latent_frames(motion) >= codec.num_latent_frames(length):
        raise ConfigError(f"sample.motion_frames={motion} leaves no new frame in a window of {length} frames "
                         f"(sample.window_frames={s.window_frames}); use fewer motion frames or longer windows")
    return length, motion


def window_plan(cfg, codec, num_frames: int) -> WindowPlan | None:
    """The chained-window plan of an N-frame request under cfg.sample; None when it is one window."""
    if num_frames <= window_limit(cfg):
        return None
    return plan_windows(num_frames, *window_length(cfg, codec))


def plan_windows(total: int, length: int, motion: int) -> WindowPlan:
    """Starts 0, T' - M, 2 (T' - M), ... with the last window pulled back to end at frame N (N > T')."""
    if total <= length:
        raise ValueError(f"plan_windows: {total} frames fit one window of {length}")
    starts = [0]
    while starts[-1] + length < total:
        starts.append(min(starts[-1] + length - motion, total - length))
    return WindowPlan(total, length, motion, tuple(starts))


@dataclass
class Window:
    start: int  # first frame of the window in the clip
    latents: torch.Tensor  # (B, C, F, h, w) sampled, the first P = the clean prefix
    cond: Conditions
    seeds: list[int]
    phases: list[list[int]]  # per clip: the request's 0-based phase index of each of this window's phases
    clean: int = 1  # latent frames of the clean prefix (the reference, or the motion frames)


@dataclass
class WindowedClips:
    frames: np.ndarray  # uint8 (B, N, H, W, 3)
    plan: WindowPlan
    windows: list[Window]


@torch.no_grad()
def generate_windows(generator, batch: ClipBatch, num_frames: int, seeds: list[int],
                     progress: bool = True) -> WindowedClips:
    """Chained-window generation of a batch of N-frame requests (module docstring)."""
    encoder, codec, cfg = generator.encoder, generator.codec, generator.cfg
    fps = float(cfg.data.fps)
    plan = generator.window_plan(num_frames)
    length, motion = plan.length, plan.motion
    features = encoder.encode_audio(batch.audio, num_frames) if encoder.audio_encoder is not None else None
    prompts = structured_prompts(batch.prompt)
    image = codec.encode(batch.reference[:, :, None])  # (B, 3, 1, H, W) -> (B, C, 1, h, w)
    video = None  # uint8 (B, N, H, W, 3) on the CPU, filled window by window (a minute at 720p is 4 GB)
    windows = []
    bar = tqdm(plan.starts, desc=f"windows of {length / fps:.2f} s", unit="window", leave=False,
               disable=not progress or len(plan.starts) < 2)
    for k, start in enumerate(bar):
        cuts = [cut_window(p, start / fps, (start + length) / fps) for p in prompts]
        window_batch = ClipBatch(
            reference=batch.reference, prompt=[to_json(c) for c, _ in cuts], num_frames=length,
            text_conditions=encoder.encode_text([c for c, _ in cuts]),  # cut prompts may have no phase
            audio_features=None if features is None else features[:, start:start + length])
        cond = encoder.conditions(window_batch, length, length)
        if k == 0:
            prefix = image
        else:
            frames = torch.from_numpy(video[:, start:start + motion]).to(image.device)  # (B, M, H, W, 3) uint8
            frames = frames.permute(0, 4, 1, 2, 3).to(image.dtype).div(127.5).sub(1)  # -> (B, 3, M, H, W)
            prefix = codec.encode(frames)  # the written pixels, re-encoded: (B, C, P, h, w)
            if cfg.sample.window_reference == "image":
                cond.reference = image
        window_seeds = [seed + k * WINDOW_SEED_STRIDE for seed in seeds]
        latents = sample_after(generator.model, prefix, cond, codec.num_latent_frames(length), window_seeds, cfg,
                               generator.guidance)
        a, b = plan.span(k)
        decoded = to_uint8_frames(codec.decode(latents)[:, :, a - start:b - start])  # (B, b - a, H, W, 3)
        if video is None:
            video = np.zeros((decoded.shape[0], num_frames) + decoded.shape[2:], np.uint8)
        video[:, a:b] = decoded
        windows.append(Window(start, latents, cond, window_seeds, [kept for _, kept in cuts],
                              codec.num_latent_frames(motion) if k else 1))
    return WindowedClips(video, plan, windows)


def windowed_text_attention(generator, clips: WindowedClips) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                      torch.Tensor, list[int]]:
    """Fig. 4 over a whole chained clip: each window's text-attention pass (Generator.text_attention),
    its frames placed at clip time and its phase columns mapped to the request's phases.

    -> mass (B, F, K + 1) (column k = the request's phase k), padding (B, F), tokens (B, K + 1) (the most
    any window gave the block), clip seconds (F,) of each kept DiT frame, the DiT layers averaged."""
    fps = float(generator.cfg.data.fps)
    B = clips.frames.shape[0]
    K = 1 + max((max(kept) + 1 for w in clips.windows for kept in w.phases if kept), default=0)
    masses, paddings, seconds, layers = [], [], [], []
    tokens = torch.zeros(B, K, dtype=torch.long)
    for k, window in enumerate(clips.windows):
        phase_mass, local = generator.text_attention(window.latents, window.cond, window.seeds, clean=window.clean)
        layers = phase_mass.layers
        at = local + window.start / fps
        a, b = clips.plan.span(k)
        keep = (at >= a / fps) & (at < b / fps)  # the DiT frames of the part this window contributes
        mass = torch.zeros(B, int(keep.sum()), K, dtype=torch.float64)
        for i in range(B):
            columns = [0] + [g + 1 for g in window.phases[i]]
            mass[i, :, columns] = phase_mass.mass[i, keep][:, :len(columns)]
            tokens[i, columns] = torch.maximum(tokens[i, columns], phase_mass.tokens[i, :len(columns)])
        masses.append(mass)
        paddings.append(phase_mass.padding[:, keep])
        seconds.append(at[keep])
    return torch.cat(masses, 1), torch.cat(paddings, 1), tokens, torch.cat(seconds), layers
