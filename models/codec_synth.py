"""SynthCodec: a closed-form space-time-patch PCA codec for SynthAvatar (CPU stand-in for Wan2.2's VAE).

Encoding follows Wan2.2-VAE's causal frame rule (notes section 3.1): video frame 0 is repeated s times so
it forms a group of its own, every later group of s frames is one latent frame, so 4n+1 frames -> n+1
latents at s = 4. Each group is a (3s, H, W) image cut into p x p patches; a patch (3 s p^2 values, e.g.
768 at s = 4, p = 8) is projected onto the top-C principal components of the training patches and
divided by the component's std (per channel, as Wan's latents_mean/std; or one global scale). Encoder and
decoder are one strided conv / transposed conv sharing the orthonormal basis; decoding group 0 averages
its s copies of frame 0 (the least-squares estimate of one frame).

Why PCA (measured on the demo split, bench/results/codec_cpu.md): the fit is closed form (2.9 s for 128
clips on 2 CPU cores, deterministic, no tuning) and it is the MSE-optimal linear codec. A conv autoencoder
initialised from the PCA and trained 600 steps (95 s, mouth/eyes/hands-weighted loss) gained only 0.9 dB
PSNR and no Sync-C; a mask-weighted linear codec gained nothing. Default p = 8, s = 4, C = 48 (Wan2.2's
z_dim): 8x8x25 latents (400 DiT tokens at patch 1x2x2), 28.4 dB PSNR on held-out clips; 16 channels fall
to 23.5 dB (a still frame scores 23.8) and CSIM 0.86. Trade-off: a linear codec spends its channels on
energy (identity colours, head and arm layout), not on the 2-3 px mouth, so temporal compression costs
lip sync: the reconstructions' Sync-C ceiling is 0.61 against the ground truth's 1.05 (unsynced audio:
0.24), while H@S/AA/TC keep ~95% and CSIM 100%. C = 96, s = 2 or p = 4 raise it to 0.82 / 0.82 / 0.99.
Cached as <cache_dir>/<key>.safetensors (+ .json metadata) by a hash of everything that decides the fit.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from common.atomic import atomic_write, atomic_write_text
from models import frames
from models.codec import CodecConfig, CodecError, LatentCodec
from models.contracts import FitFrames

CODEC_VERSION = 1  # bump whenever the fit or the stored tensors change meaning


def space_time_groups(video: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 3, T, H, W) with T = s(F-1)+1 -> (B*F, s*3, H, W), channels ordered (frame, colour).

    Frame 0 is repeated s times (Wan's causal first latent), so T + s - 1 = s*F frames split evenly."""
    B, _, _, H, W = video.shape
    x = video.transpose(1, 2)                                           # (B, T, 3, H, W)
    x = torch.cat([x[:, :1].expand(-1, stride - 1, -1, -1, -1), x], 1)   # (B, s*F, 3, H, W)
    return x.reshape(-1, stride * 3, H, W)                              # (B*F, s*3, H, W)


class SynthCodec(LatentCodec):
    """PCA codec: `basis` (C, 3s, p, p) orthonormal rows, `patch_mean` (3s, p, p), `latent_std` (C,)."""

    def __init__(self, basis: torch.Tensor, patch_mean: torch.Tensor, latent_std: torch.Tensor,
                 normalize: str = "channel"):
        super().__init__()
        C, S3, p, _ = basis.shape
        self.latent_channels, self.temporal_stride, self.spatial_stride = C, S3 // 3, p
        self.causal_first = True
        self.normalize = normalize
        self.register_buffer("basis", basis.float().contiguous())
        self.register_buffer("patch_mean", patch_mean.float().contiguous())
        self.register_buffer("latent_std", latent_std.float().contiguous())
        self.freeze()

    def latent_scale(self) -> torch.Tensor:
        """(C,) divisor of the raw PCA coefficients: per-channel std, or their RMS for 'global'.

        'global' keeps PCA's energy ordering, so latent MSE is proportional to pixel MSE; 'channel' (Wan's
        convention) gives every channel unit variance, weighting fine-detail channels up in the DiT loss."""
        if self.normalize == "global":
            return self.latent_std.pow(2).mean().sqrt().expand_as(self.latent_std)
        return self.latent_std

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        B, s, p = video.shape[0], self.temporal_stride, self.spatial_stride
        groups = space_time_groups(video.float(), s)                       # (B*F, 3s, H, W)
        bias = -(self.basis * self.patch_mean).flatten(1).sum(1)           # -basis . mean: centres patches
        coeffs = F.conv2d(groups, self.basis, bias, stride=p)             # (B*F, C, h, w)
        z = coeffs / self.latent_scale()[:, None, None]
        return z.unflatten(0, (B, -1)).transpose(1, 2)                    # (B, C, F, h, w)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        B, C, num_latent, h, w = latents.shape
        s, p = self.temporal_stride, self.spatial_stride
        z = latents.float().transpose(1, 2).reshape(B * num_latent, C, h, w)
        coeffs = z * self.latent_scale()[:, None, None]
        groups = F.conv_transpose2d(coeffs, self.basis, stride=p)         # (B*F, 3s, H, W)
        groups = groups + self.patch_mean.repeat(1, h, w)
        x = groups.reshape(B, num_latent, s, 3, h * p, w * p)             # (B, F, s, 3, H, W)
        first = x[:, :1].mean(2)                                          # group 0 = s copies of frame 0
        video = torch.cat([first, x[:, 1:].flatten(1, 2)], 1)             # (B, s(F-1)+1, 3, H, W)
        return video.transpose(1, 2)                                      # (B, 3, T, H, W)


# ---------------------------------------------------------------------------------------------- fit


def _as_video(clip, stride: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) clip (synthavatar load_clip) -> float (1, 3, T', H, W) in [-1, 1], T' valid."""
    clip = torch.as_tensor(np.asarray(clip))
    if clip.dim() != 4 or clip.shape[-1] != 3 or clip.dtype != torch.uint8:
        raise ValueError(f"fit_synth_codec: clips must be uint8 (T, H, W, 3), got {clip.dtype} {tuple(clip.shape)}")
    T = frames.num_video_frames(frames.num_latent_frames(clip.shape[0], stride, True), stride, True)
    return clip[:T].permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)


def _patches(video: torch.Tensor, stride: int, patch: int) -> torch.Tensor:
    """(1, 3, T, H, W) -> (F*h*w, 3*s*p*p) patch vectors, ordered like the conv weight's (C_in, kh, kw)."""
    cols = F.unfold(space_time_groups(video, stride), patch, stride=patch)  # (F, 3s*p*p, h*w)
    return cols.transpose(1, 2).flatten(0, 1)


def _patch_moments(clips: Iterable, stride: int, patch: int, num_clips: int | None, progress: bool) -> dict:
    """One streaming pass: patch mean and covariance (float64; per-clip products in float32, 1600 x 768
    for a 97-frame clip at s = 4, p = 8), plus patch, frame and clip counts."""
    dim = 3 * stride * patch * patch
    total, gram = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64)
    count = num_frames = seen = 0
    for clip in tqdm(clips, total=num_clips, desc="fitting SynthCodec (PCA)", unit="clip", disable=not progress):
        video = _as_video(clip, stride)
        if video.shape[-1] % patch or video.shape[-2] % patch:
            raise ValueError(f"fit_synth_codec: frame size {tuple(video.shape[-2:])} is not a multiple of "
                             f"spatial_stride {patch}")
        X = _patches(video, stride, patch)                                # (N, D)
        total += X.sum(0, dtype=torch.float64)
        gram += (X.T @ X).double()
        count, num_frames, seen = count + len(X), num_frames + video.shape[2], seen + 1
    mean = total / max(count, 1)
    return {"mean": mean, "cov": gram / max(count, 1) - torch.outer(mean, mean), "patches": count,
            "frames": num_frames, "clips": seen}


def _principal_components(cov: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Top components of a (D, D) covariance: vectors (D, C), stds (C,), explained variance fraction."""
    eigvals, eigvecs = torch.linalg.eigh(cov)                             # ascending
    vals, vecs = eigvals.flip(0)[:channels].clamp_min(1e-12), eigvecs.flip(1)[:, :channels]
    # eigh's signs are arbitrary: make each component's largest entry positive, so refits agree.
    vecs = vecs * torch.sign(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)))
    return vecs, vals.sqrt(), float(vals.sum() / eigvals.clamp_min(0).sum())


def fit_synth_codec(cfg: CodecConfig, clips: Iterable, num_clips: int | None = None,
                    progress: bool = True) -> tuple[SynthCodec, dict]:
    """Closed-form PCA fit on uint8 (T, H, W, 3) clips (each cut to its valid length). Returns (codec,
    fit statistics). `num_clips` only sizes the progress bar."""
    problems = cfg.check()
    if problems:
        raise ValueError("; ".join(f"codec.{name}: {problem}" for name, problem in problems))
    s, p, C = cfg.temporal_stride, cfg.spatial_stride, cfg.channels
    start = time.time()
    moments = _patch_moments(clips, s, p, num_clips, progress)
    if moments["patches"] <= C:
        raise ValueError(f"fit_synth_codec: {moments['patches']} patches cannot define {C} components; "
                         "give more clips")
    vecs, stds, explained = _principal_components(moments["cov"], C)
    codec = SynthCodec(vecs.T.reshape(C, 3 * s, p, p), moments["mean"].reshape(3 * s, p, p), stds, cfg.normalize)
    stats = {"fit_seconds": round(time.time() - start, 2), "clips": moments["clips"], "frames": moments["frames"],
             "patches": moments["patches"], "explained_variance": round(explained, 5)}
    return codec, stats


# -------------------------------------------------------------------------------------------- cache


def synth_codec_key(cfg: CodecConfig, frames: FitFrames) -> str:
    """Content hash of everything that decides a fit: codec shape, the frames' fingerprint (for SynthAvatar:
    generation settings, cache version, clips used), the codec version."""
    payload = {"codec": {k: getattr(cfg, k) for k in ("spatial_stride", "temporal_stride", "channels")},
               **frames.fingerprint, "version": CODEC_VERSION}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_path(cfg: CodecConfig, key: str) -> Path:
    return Path(cfg.cache_dir) / f"{key}.safetensors"


def save_synth_codec(codec: SynthCodec, path: Path, key: str, info: dict) -> None:
    """Write tensors (+ key in the header) then the json metadata, each atomically."""
    tensors = {name: getattr(codec, name).contiguous() for name in ("basis", "patch_mean", "latent_std")}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"key": key}))
    atomic_write_text(path.with_suffix(".json"), json.dumps(info | {"key": key}, indent=1))


def load_synth_codec(path: Path, cfg: CodecConfig, key: str | None = None) -> SynthCodec:
    """Load a cached codec, checking it is readable, matches `cfg`'s shapes (and `key`), and is finite."""
    path = Path(path)
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            stored_key = (f.metadata() or {}).get("key")
    except (OSError, ValueError, SafetensorError) as err:
        raise CodecError(f"{path}: cannot read cached SynthCodec ({type(err).__name__}: {err})") from err
    s, p, C = cfg.temporal_stride, cfg.spatial_stride, cfg.channels
    expected = {"basis": (C, 3 * s, p, p), "patch_mean": (3 * s, p, p), "latent_std": (C,)}
    for name, shape in expected.items():
        if name not in tensors or tuple(tensors[name].shape) != shape:
            got = tuple(tensors[name].shape) if name in tensors else "missing"
            raise CodecError(f"{path}: tensor {name!r} is {got}, expected {shape}")
        if not torch.isfinite(tensors[name]).all():
            raise CodecError(f"{path}: tensor {name!r} holds NaN/inf")
    if key is not None and stored_key != key:
        raise CodecError(f"{path}: stored key {stored_key!r} does not match {key!r}")
    if not (tensors["latent_std"] > 0).all():
        raise CodecError(f"{path}: latent_std must be positive")
    return SynthCodec(tensors["basis"], tensors["patch_mean"], tensors["latent_std"], cfg.normalize)


def load_or_fit_synth_codec(cfg: CodecConfig, frames: FitFrames, progress: bool = True) -> SynthCodec:
    """The cached SynthCodec for (cfg, frames), fitting and caching it on those frames if needed.

    A corrupt or mismatching cache file is reported with a warning naming it, then refitted over."""
    num_clips = frames.num_clips
    if num_clips == 0:
        raise ValueError("SynthCodec: no training clips to fit on (is the train split empty?)")
    key = synth_codec_key(cfg, frames)
    path = cache_path(cfg, key)
    codec = None
    if path.exists():
        try:
            codec = load_synth_codec(path, cfg, key)
        except CodecError as err:
            warnings.warn(f"{err}; refitting the codec", stacklevel=2)
    if codec is None:
        codec, stats = fit_synth_codec(cfg, frames.videos(), num_clips=num_clips, progress=progress)
        info = stats | {"codec": {k: getattr(cfg, k) for k in ("spatial_stride", "temporal_stride", "channels")},
                        **frames.fingerprint, "version": CODEC_VERSION}
        save_synth_codec(codec, path, key, info)
    codec.key = key  # the latent space's identity: recorded with trained weights, checked by init_from
    return codec
