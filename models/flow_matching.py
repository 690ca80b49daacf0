"""Flow-matching objective (ActAvatar Sec. "Two-stage training"; Wan2.2), kept apart from the network.

Path: x_t = (1 - t) * x0 + t * x1, x0 = clean latents, x1 ~ N(0, I), t in [0, 1]; the network regresses
the velocity v = x1 - x0 = dx_t/dt. Timesteps are drawn uniformly (or logit-normal) and then shifted
towards the noisy end, t' = s*t / (1 + (s - 1)*t), as Wan does for large latents. Image-to-video
conditioning: the first latent frame is given clean (its per-token timestep is 0) and excluded from the
loss. Modality dropout (text, audio, image each with p = 0.1) trains the unconditional branches that
classifier-free guidance needs. The network is any callable `model(x_t, t_frames, cond) -> velocity`
with latents (B, C, F, H, W) and per-frame timesteps (B, F): it does not know it is a diffusion model.
Trade-off: per-frame timesteps (not per-token) are all image-to-video needs and keep the API small.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.contracts import AuxOutputs, Conditions

VelocityFn = Callable[[torch.Tensor, torch.Tensor, Conditions], torch.Tensor]


@dataclass
class FlowMatchingConfig:
    shift: float = 3.0  # Wan uses 3.0 at 480p and 5.0 at 720p
    timestep_dist: str = "uniform"  # or "logit_normal"
    clean_first_frame: bool = True  # image-to-video: frame 0 is the (clean) reference latent
    drop_text: float = 0.1
    drop_audio: float = 0.1
    drop_image: float = 0.1
    # Making the copy-the-reference shortcut less free (issue 15); 0 = off, the Wan recipe.
    motion_weight: float = 0.0  # loss weight 1 + a * |x0 - x0[frame 0]| / its mean: where frames move
    reference_noise: float = 0.0  # training only: frame 0 gets a timestep ~ U(0, r) instead of 0
    # What the network's output means (as_velocity): velocity (Wan), x0 (the clean latents) or motion
    # (x0 minus the reference latent repeated: copying the reference is the zero output, so the zero-init
    # head starts at the copy and every gradient is about motion). x0 / motion train an x0-space MSE.
    prediction: str = "velocity"


PREDICTIONS = ("velocity", "x0", "motion")
T_MIN = 0.02  # x0 / motion -> velocity divides by t; frame 0 (t = 0) and t -> 0 are clamped here


def _clamped_t(t_frames: torch.Tensor) -> torch.Tensor:
    """(B, F) per-frame t -> (B, 1, F, 1, 1) fp32, at least T_MIN: the x0 <-> velocity factor."""
    return t_frames.float().clamp_min(T_MIN)[:, None, :, None, None]


def as_velocity(model: VelocityFn, prediction: str) -> VelocityFn:
    """The network read as a velocity field whatever it predicts (the sampler and the loss see velocity):
    v = (x_t - x0_hat) / t, x0_hat = out (x0) or out + reference latent (motion; the reference is
    cond.reference, else the clean frame 0 of x_t). A network returning (out, aux) keeps its aux."""
    if prediction == "velocity":
        return model
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; use one of {PREDICTIONS}")

    def velocity(x_t: torch.Tensor, t_frames: torch.Tensor, cond: Conditions):
        out = model(x_t, t_frames, cond)
        out, aux = out if isinstance(out, tuple) else (out, None)
        x0_hat = out.float()
        if prediction == "motion":
            reference = x_t[:, :, :1] if cond.reference is None else cond.reference
            x0_hat = x0_hat + reference.float()  # (B, C, 1, h, w) broadcast over frames
        v = ((x_t.float() - x0_hat) / _clamped_t(t_frames)).to(out.dtype)
        return v if aux is None else (v, aux)

    return velocity


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Monotone map of [0, 1] onto itself that spends more of it near t = 1 (noise) when shift > 1."""
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(batch: int, cfg: FlowMatchingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    if cfg.timestep_dist == "uniform":
        t = torch.rand(batch, generator=generator)
    elif cfg.timestep_dist == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator))
    else:
        raise ValueError(f"unknown timestep_dist {cfg.timestep_dist!r}; use 'uniform' or 'logit_normal'")
    return shift_timesteps(t, cfg.shift)


def frame_timesteps(t: torch.Tensor, num_frames: int, clean_first_frame: bool | int) -> torch.Tensor:
    """(B,) -> (B, F) per-frame timesteps; frame 0 gets t = 0 when it is the clean reference (True), or
    frames 0..P-1 when an int P of clean frames is given (motion frames of a chained window)."""
    t_frames = t[:, None].expand(-1, num_frames).clone()
    if clean_first_frame:
        t_frames[:, :int(clean_first_frame)] = 0.0
    return t_frames


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, t_frames: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1 with t per frame: latents (B, C, F, H, W), t_frames (B, F)."""
    t = t_frames[:, None, :, None, None]  # (B, 1, F, 1, 1)
    return (1 - t) * x0 + t * noise


def drop_modalities(cond: Conditions, cfg: FlowMatchingConfig, generator: torch.Generator | None = None) -> Conditions:
    """Per-sample keep flags for CFG training: cond.keep_text / keep_audio / keep_image (B,) bool.

    The network zeroes a dropped modality's tokens (the "null" condition the sampler also uses)."""
    batch, device = cond.text.shape[0], cond.text.device
    keeps = {}
    for name, p in (("text", cfg.drop_text), ("audio", cfg.drop_audio), ("image", cfg.drop_image)):
        keep = (torch.rand(batch, generator=generator) >= p).to(device)
        before = getattr(cond, f"keep_{name}")
        keeps[f"keep_{name}"] = keep & (torch.ones(batch, dtype=torch.bool, device=device) if before is None else before)
    return cond.replace(**keeps)


def flow_matching_loss(model: VelocityFn, x0: torch.Tensor, cond: Conditions, cfg: FlowMatchingConfig,
                       generator: torch.Generator | None = None, t: torch.Tensor | None = None,
                       noise: torch.Tensor | None = None, training: bool = False) -> dict:
    """MSE between predicted and target velocity over the frames that are actually noised.

    Returns {"loss", "t", "per_sample", "aux"} (aux: the network's auxiliary outputs, e.g. the
    localisation loss, when it returns (velocity, aux)); `t` and `noise` can be given (tests, validation).
    training: apply the training-only augmentation (reference_noise), never in validation."""
    B, _, F = x0.shape[:3]
    # Random draws come from `generator` (CPU) so runs are reproducible on any device, then move.
    t = (sample_timesteps(B, cfg, generator) if t is None else t).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype) if noise is None else noise
    noise = noise.to(x0.device)
    t_frames = frame_timesteps(t.to(x0.dtype), F, cfg.clean_first_frame)
    if cfg.clean_first_frame and cfg.reference_noise > 0 and training:
        t_frames[:, 0] = cfg.reference_noise * torch.rand(B, generator=generator).to(x0.device, x0.dtype)
    x_t = noisy_latents(x0, noise, t_frames)
    v_pred = as_velocity(model, cfg.prediction)(x_t, t_frames, cond)
    aux = AuxOutputs()
    if isinstance(v_pred, tuple):  # a network called with return_aux=True: (velocity, AuxOutputs)
        v_pred, aux = v_pred
    err = (v_pred.float() - (noise - x0).float()) ** 2  # (B, C, F, H, W)
    v_err = err
    if cfg.prediction != "velocity":  # x0-space MSE: |x0_hat - x0|^2 = t^2 |v_hat - v|^2
        err = err * _clamped_t(t_frames) ** 2
    weight = torch.ones(F, dtype=err.dtype, device=err.device)
    if cfg.clean_first_frame:
        weight[0] = 0.0  # the reference frame is given, not predicted

    def per_sample_mean(e: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> (B,) over the noised frames
        return (e.mean(dim=(1, 3, 4)) * weight).sum(1) / weight.sum().clamp_min(1)

    mse = per_sample_mean(v_err).mean()  # unweighted velocity MSE: comparable across recipes
    if cfg.motion_weight > 0:  # up-weight the latents that differ from the reference (the few that move)
        moving = (x0 - x0[:, :, :1]).abs().float().mean(1, keepdim=True)  # (B, 1, F, H, W)
        spatial = 1 + cfg.motion_weight * moving / moving.mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-8)
        err = err * spatial / spatial.mean(dim=(2, 3, 4), keepdim=True)  # same mean scale as unweighted
    per_sample = per_sample_mean(err)
    return {"loss": per_sample.mean(), "mse": mse.detach(), "t": t, "per_sample": per_sample, "aux": aux}
