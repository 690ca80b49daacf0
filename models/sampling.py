"""Sampler for the flow-matching model: Euler or Heun steps from noise (t = 1) to data (t = 0), with
dual classifier-free guidance over text and audio (ActAvatar: text and audio scales of 5.0).

Dual CFG, three network passes per step (the formula shared by OmniAvatar-style audio avatars):
    v = v(∅, ∅) + s_text * (v(text, ∅) - v(∅, ∅)) + s_audio * (v(text, audio) - v(text, ∅))
where v(text, audio) conditions on both, v(text, ∅) drops audio and v(∅, ∅) drops both. With both
scales 1 it reduces to the fully conditioned velocity (one pass is then enough and is what we run).
The image condition (reference frame) is never dropped at sampling time. The timestep grid uses the
same shift as training. Trade-off: Heun doubles the network calls per step for second-order accuracy.
"""
from __future__ import annotations

import torch

from models.contracts import Conditions
from models.flow_matching import VelocityFn, frame_timesteps, shift_timesteps


def _with_keep(cond: Conditions, text: bool, audio: bool, batch: int, device=None) -> Conditions:
    keep = lambda flag: torch.full((batch,), flag, dtype=torch.bool, device=device)
    return cond.replace(keep_text=keep(text), keep_audio=keep(audio))


def guidance_passes(text_scale: float, audio_scale: float) -> list[tuple[bool, bool]]:
    """(keep text, keep audio) of each network pass: v(text, audio)[, v(text, ∅), v(∅, ∅)]."""
    if text_scale == 1.0 and audio_scale == 1.0:
        return [(True, True)]
    return [(True, True), (True, False), (False, False)]


def combine_guidance(velocities: list[torch.Tensor], text_scale: float, audio_scale: float) -> torch.Tensor:
    """The dual-CFG formula above over the passes of `guidance_passes`, in that order."""
    if len(velocities) == 1:
        return velocities[0]
    v_full, v_text, v_none = velocities
    return v_none + text_scale * (v_text - v_none) + audio_scale * (v_full - v_text)


def guided_velocity(model: VelocityFn, x: torch.Tensor, t_frames: torch.Tensor, cond: Conditions,
                    text_scale: float = 1.0, audio_scale: float = 1.0) -> torch.Tensor:
    """Dual-CFG velocity (the 3-pass formula above); 1 pass when both scales are 1.
    models/sequence_parallel.py guidance_parallel runs the same passes on several ranks."""
    B = x.shape[0]
    return combine_guidance([model(x, t_frames, _with_keep(cond, text, audio, B, x.device))
                             for text, audio in guidance_passes(text_scale, audio_scale)], text_scale, audio_scale)


def timestep_grid(steps: int, shift: float) -> torch.Tensor:
    """steps + 1 decreasing timesteps from 1 to 0, shifted like the training distribution."""
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift)


@torch.no_grad()
def sample(model: VelocityFn, noise: torch.Tensor, cond: Conditions, steps: int = 40, solver: str = "euler",
           shift: float = 3.0, text_scale: float = 1.0, audio_scale: float = 1.0,
           first_frame: torch.Tensor | None = None, guidance=guided_velocity) -> torch.Tensor:
    """Integrate dx/dt = v from t = 1 (noise (B, C, F, H, W)) to t = 0.

    first_frame (B, C, P, H, W): clean latents kept fixed at frames 0..P-1: the reference (P = 1,
    image-to-video) or the motion frames carried over from the previous window of a long clip.
    guidance: the function combining the CFG passes (guided_velocity, or its multi-rank twin)."""
    if solver not in ("euler", "heun"):
        raise ValueError(f"unknown solver {solver!r}; use 'euler' or 'heun'")
    x = noise.clone()
    F = x.shape[2]
    clean = 0 if first_frame is None else first_frame.shape[2]

    def velocity(x_now, t_now):
        if clean:
            x_now = torch.cat([first_frame, x_now[:, :, clean:]], 2)
        t_frames = frame_timesteps(torch.full((x.shape[0],), float(t_now), device=x.device), F, clean)
        return guidance(model, x_now, t_frames, cond, text_scale, audio_scale)

    grid = timestep_grid(steps, shift)
    for t_now, t_next in zip(grid[:-1], grid[1:]):
        v = velocity(x, t_now)
        x_euler = x + (t_next - t_now) * v
        if solver == "heun":  # trapezoid with the slope at the Euler prediction (v is defined at t = 0)
            x = x + (t_next - t_now) * 0.5 * (v + velocity(x_euler, t_next))
        else:
            x = x_euler
    if clean:
        x[:, :, :clean] = first_frame
    return x
