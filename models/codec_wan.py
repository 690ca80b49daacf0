"""WanVAECodec: the Wan2.1/2.2 causal video VAE (diffusers AutoencoderKLWan) behind the LatentCodec API.

Loads from a LOCAL diffusers directory only (config.json + weights, or a pipeline root with a vae/
subfolder); nothing is downloaded. Encoding follows the Wan pipelines exactly (notes section 3.2;
diffusers pipeline_wan_i2v.py): take the posterior's mode (`retrieve_latents(sample_mode="argmax")`),
then (z - latents_mean) / latents_std with the config's per-channel lists; decoding applies
z * std + mean, runs the VAE and clamps to [-1, 1]. Wan2.2-TI2V-5B: z_dim 48, 4x16x16 (2x2 pixel
patchify, then 8x), frames 4n+1 -> n+1 latents.
codec.tile > 0 encodes and decodes in overlapping spatial tiles (diffusers' enable_tiling), which bounds
activation memory on large real frames at the price of latents that differ slightly from whole-frame ones
(the condition cache's fingerprint holds codec.tile, so the two are never mixed).
Trade-off: the VAE is 705M parameters; it is frozen and, as a registered submodule, moves with `.to()`,
but it also appears in a parent's state_dict: exclude `codec.` keys from training checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.digest import module_digest
from models.codec import CodecError, LatentCodec


def resolve_vae_dir(path: str | Path) -> Path:
    """The directory holding the VAE's config.json: `path` itself or its `vae/` subfolder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CodecError(f"{path}: Wan VAE directory not found (codec.path must be a local diffusers "
                         "AutoencoderKLWan directory; nothing is downloaded)")
    for candidate in (path, path / "vae"):
        if (candidate / "config.json").is_file():
            return candidate
    raise CodecError(f"{path}: no config.json (nor vae/config.json); expected a diffusers AutoencoderKLWan "
                     "directory as written by save_pretrained")


class WanVAECodec(LatentCodec):
    """Frozen AutoencoderKLWan; latents normalised with the config's latents_mean / latents_std."""

    def __init__(self, path: str | Path, dtype: torch.dtype = torch.float32, tile: int = 0):
        super().__init__()
        from diffusers import AutoencoderKLWan  # heavy import, only when a Wan codec is built

        vae_dir = resolve_vae_dir(path)
        try:
            self.vae = AutoencoderKLWan.from_pretrained(vae_dir, torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as err:
            raise CodecError(f"{vae_dir}: cannot load AutoencoderKLWan ({type(err).__name__}: {err})") from err
        config = self.vae.config
        self.latent_channels = int(config.z_dim)
        # diffusers' encoder loop hard-codes Wan's 1 + 4k chunking, so only a 4x temporal VAE is usable.
        self.temporal_stride = 2 ** sum(bool(d) for d in config.temperal_downsample)
        self.spatial_stride = (config.patch_size or 1) * 2 ** (len(config.dim_mult) - 1)
        self.causal_first = True
        if self.temporal_stride != 4:
            raise CodecError(f"{vae_dir}: temperal_downsample {config.temperal_downsample} gives temporal "
                             f"stride {self.temporal_stride}; AutoencoderKLWan encodes in chunks of 4")
        for name in ("latents_mean", "latents_std"):
            values = getattr(config, name)
            if values is None or len(values) != self.latent_channels:
                raise CodecError(f"{vae_dir}: config {name} must list z_dim = {self.latent_channels} values "
                                 f"(got {None if values is None else len(values)})")
        shape = (1, self.latent_channels, 1, 1, 1)
        self.register_buffer("latents_mean", torch.tensor(config.latents_mean, dtype=torch.float32).view(shape))
        self.register_buffer("latents_std", torch.tensor(config.latents_std, dtype=torch.float32).view(shape))
        if tile:  # large frames (real video): overlapping spatial tiles, blended (a stride of 3/4 of the tile)
            self.vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                                   tile_sample_stride_height=tile * 3 // 4, tile_sample_stride_width=tile * 3 // 4)
        self.freeze()
        # The latent space's identity (recorded with trained weights, checked by train.init_from): the weights'
        # digest, since every pipeline's VAE sits in a folder named vae/ and a name alone says nothing.
        self.key = f"wan-vae:{module_digest(self.vae)}"

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(video.to(self.vae.dtype)).latent_dist
        z = posterior.mode().float()                                    # (B, C, F, h, w), argmax as Wan
        return (z - self.latents_mean) / self.latents_std

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.float() * self.latents_std + self.latents_mean
        return self.vae.decode(z.to(self.vae.dtype)).sample.float()    # (B, 3, 4(F-1)+1, H, W)
