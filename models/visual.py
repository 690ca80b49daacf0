"""SyncDreamer Visual Adapter: reference -> K identity tokens -> Visual-Cross-Attention in every DiT block.

Paper: SyncDreamer, "Visual Adapter" and "Attention localisation loss". An image encoder turns the reference
into visual tokens (B, N_v, C_enc); a Q-Former (K learnable queries, self-attn + cross-attn to the visual
tokens + FFN) compresses them into K identity tokens (B, K, dim); every DiT block reads them through a
zero-initialised `VisualCrossAttention`, so the adapter starts as an exact identity of the backbone.

Localisation loss, our concrete reading of the paper: the K tokens are split into len(regions) equal
contiguous groups, token j belongs to region r(j) = j // (K / R). M_ij = 1 iff video token (query) i lies
inside region r(j) at its frame. For a query inside at least one region, l_i = sum_j A_ij (1 - M_ij) is the
attention mass on tokens of regions that do not contain it (A = softmax over the K tokens); L_loc is the
mean of l_i over such queries, heads and the selected (mid-level) blocks; queries outside every region are
excluded (their l_i is 1 whatever they do, so they carry no gradient). The per-query form lets a fused
kernel accumulate the loss without materialising A.

Trade-offs: the loss needs the probabilities, so the selected blocks compute softmax(QK^T/sqrt(d))
explicitly in fp32 instead of calling the attention entry point; with K ~ 20 keys, A is only (B, H, L, K),
so this costs little. The Q-Former runs at the DiT width by default (~130M parameters per layer at
width 3072); `qformer_dim` trades that for a narrower Q-Former plus an output projection.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.local_models import load_local, local_model_dir
from models.attention import ProjectedAttention, attention, attention_probs, merge_heads, split_heads
from models.frames import num_video_frames

ENCODERS = ("patch", "pretrained")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class VisualConfig:
    """Visual Adapter settings (an omegaconf-compatible section)."""

    enabled: bool = True
    encoder: str = "patch"  # "patch": over the reference latent; "pretrained": frozen HF vision model on the image
    encoder_path: str = ""  # local directory of the pretrained vision model (encoder = "pretrained")
    encoder_dim: int = 256  # width of the patch encoder
    encoder_layers: int = 2  # transformer layers of the patch encoder
    encoder_heads: int = 4
    encoder_patch: int = 2  # patch size over the reference latent
    num_queries: int = 20  # K identity tokens; a multiple of len(regions)
    qformer_layers: int = 2
    qformer_heads: int = 8
    qformer_dim: int = 0  # internal Q-Former width; 0 = the DiT width
    regions: list[str] = field(default_factory=lambda: ["eyes", "mouth", "hair", "face", "hands"])
    loc_weight: float = 0.4  # lambda_loc
    loc_blocks: list[int] = field(default_factory=list)  # empty = the middle third of the blocks
    region_fraction: float = 0.25  # share of a token's pixels (over its frames) that puts it inside a region

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.encoder not in ENCODERS:
            problems.append(("encoder", f"must be one of {ENCODERS} (got {self.encoder!r})"))
        if self.encoder == "pretrained" and not self.encoder_path:
            problems.append(("encoder_path", "must name a local model directory when encoder = 'pretrained'"))
        positive = ("encoder_dim", "encoder_heads", "encoder_patch", "num_queries", "qformer_layers", "qformer_heads")
        problems += [(n, f"must be > 0 (got {getattr(self, n)})") for n in positive if getattr(self, n) <= 0]
        problems += [(n, f"must be >= 0 (got {getattr(self, n)})")
                     for n in ("encoder_layers", "qformer_dim", "loc_weight") if getattr(self, n) < 0]
        # 2D sin-cos position embedding: a quarter of the channels per (axis, sin|cos).
        if self.encoder_dim % 4 or (self.encoder_heads > 0 and self.encoder_dim % self.encoder_heads):
            problems.append(("encoder_dim", f"must be a multiple of 4 and of encoder_heads "
                             f"(got {self.encoder_dim}, heads {self.encoder_heads})"))
        if len(set(self.regions)) != len(self.regions):
            problems.append(("regions", f"contains duplicates: {list(self.regions)}"))
        if not self.regions:
            problems.append(("regions", "must name at least one region"))
        elif self.num_queries % len(self.regions):
            problems.append(("num_queries", f"must be divisible by len(regions) = {len(self.regions)} "
                             f"(got {self.num_queries})"))
        if any(b < 0 for b in self.loc_blocks):
            problems.append(("loc_blocks", f"block indices must be >= 0 (got {list(self.loc_blocks)})"))
        if not 0.0 < self.region_fraction <= 1.0:
            problems.append(("region_fraction", f"must be in (0, 1] (got {self.region_fraction})"))
        return problems


def resolve_loc_blocks(cfg: VisualConfig, num_layers: int) -> list[int]:
    """Blocks that compute the localisation loss: cfg.loc_blocks, or the middle third [n//3, n - n//3)."""
    if not cfg.loc_blocks:
        return list(range(num_layers // 3, num_layers - num_layers // 3))
    bad = [b for b in cfg.loc_blocks if not 0 <= b < num_layers]
    if bad:
        raise ValueError(f"visual.loc_blocks: {bad} out of range for a DiT with {num_layers} blocks")
    return sorted(set(cfg.loc_blocks))


@dataclass
class IdentityTokens:
    """K identity tokens (B, K, dim) and the region index of each token (K,) into cfg.regions."""
    tokens: torch.Tensor
    token_region: torch.Tensor


# ----------------------------------------------------------------------------------------------- blocks

class _Attention(nn.Module):
    """Multi-head attention through the entry point; context = x gives self-attention."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x, context, backend="sdpa"):
        k, v = self.kv(context).chunk(2, -1)
        q, k, v = (split_heads(t, self.heads) for t in (self.q(x), k, v))
        return self.o(merge_heads(attention(q, k, v, backend=backend)))


class _Block(nn.Module):
    """Pre-norm transformer layer: self-attention, optional cross-attention to a context, GELU FFN."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, mlp_ratio: int = 4):
        super().__init__()
        self.norm_self, self.self_attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.cross = context_dim is not None
        if self.cross:
            self.norm_x, self.norm_ctx = nn.LayerNorm(dim), nn.LayerNorm(context_dim)
            self.cross_attn = _Attention(dim, heads, context_dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, context=None, backend="sdpa"):
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, backend)
        if self.cross:
            x = x + self.cross_attn(self.norm_x(x), self.norm_ctx(context), backend)
        return x + self.ff(self.norm_ff(x))


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding (h*w, dim), row-major; works at any reference resolution."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, -1)  # (h*w, dim)


# ---------------------------------------------------------------------------------------------- encoders

class PatchReferenceEncoder(nn.Module):
    """Reference latent (B, C, 1, h, w) -> visual tokens (B, h/p * w/p, encoder_dim).

    Works in latent space (the clean first-frame VAE latent), so it needs no extra pixel encoder."""

    def __init__(self, latent_channels: int, encoder_dim: int, patch: int = 2, layers: int = 2, heads: int = 4):
        super().__init__()
        if encoder_dim % 4:
            raise ValueError(f"encoder_dim must be a multiple of 4 for the 2D position embedding (got {encoder_dim})")
        self.latent_channels, self.patch, self.out_dim = latent_channels, patch, encoder_dim
        self.embed = nn.Conv2d(latent_channels, encoder_dim, patch, stride=patch)
        self.blocks = nn.ModuleList(_Block(encoder_dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(encoder_dim)

    def forward(self, latent: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
        if latent.dim() != 5 or latent.shape[1] != self.latent_channels or latent.shape[2] != 1:
            raise ValueError(f"reference_latent must be (B, {self.latent_channels}, 1, h, w), "
                             f"got {tuple(latent.shape)}")
        h, w = latent.shape[-2:]
        if h % self.patch or w % self.patch:
            raise ValueError(f"reference_latent spatial size {h}x{w} is not divisible by patch {self.patch}")
        x = self.embed(latent[:, :, 0])                      # (B, C_enc, h/p, w/p)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)                     # (B, gh*gw, C_enc)
        x = x + sincos_2d(gh, gw, self.out_dim, x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, backend=backend)
        return self.norm(x)


def _load_norm_stats(path: Path, config) -> tuple[tuple, tuple]:
    """Pixel mean/std: preprocessor_config.json, else the model config, else ImageNet stats.

    Transformers keeps image_mean/std in the processor config, not the model config; we read the JSON
    directly rather than building an image processor (some need torchvision, which we do not install)."""
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        stats = json.loads(pre.read_text())
        if "image_mean" in stats and "image_std" in stats:
            return tuple(stats["image_mean"]), tuple(stats["image_std"])
    mean, std = getattr(config, "image_mean", None), getattr(config, "image_std", None)
    if mean is not None and std is not None:
        return tuple(mean), tuple(std)
    return IMAGENET_MEAN, IMAGENET_STD


class PretrainedReferenceEncoder(nn.Module):
    """Frozen HF vision backbone (Dinov2, CLIP/SigLIP vision, ...) from a local directory.

    Reference image (B, 3, H, W) in [-1, 1] -> [0, 1] -> (x - mean) / std -> resized to the model's
    image_size (when it declares one) -> patch tokens of last_hidden_state (B, N_patches, hidden); the
    CLS / register tokens are dropped by keeping the last N_patches tokens (they come first in all three)."""

    def __init__(self, path: str):
        super().__init__()
        root = local_model_dir(path, "visual reference encoder", "visual.encoder_path")
        from transformers import AutoModel  # deferred: importing transformers costs seconds
        model = load_local(root, "visual reference encoder", AutoModel.from_pretrained)
        self.model = getattr(model, "vision_model", model)  # full CLIP/SigLIP -> its vision tower
        config = self.model.config
        self.patch = int(config.patch_size)
        self.image_size = getattr(config, "image_size", None)
        self.out_dim = int(config.hidden_size)
        mean, std = _load_norm_stats(root, config)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True):
        """Stay in eval mode: the backbone is frozen (no dropout, fixed statistics)."""
        super().train(mode)
        self.model.eval()
        return self

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return ((image + 1) / 2 - self.mean) / self.std

    @torch.no_grad()
    def forward(self, image: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"reference_image must be (B, 3, H, W) in [-1, 1], got {tuple(image.shape)}")
        x = self.normalise(image.float())
        if self.image_size and tuple(x.shape[-2:]) != (self.image_size,) * 2:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        x = x.to(next(self.model.parameters()).dtype)
        num_patches = (x.shape[-2] // self.patch) * (x.shape[-1] // self.patch)
        hidden = self.model(pixel_values=x).last_hidden_state  # (B, prefix + N_patches, hidden)
        return hidden[:, -num_patches:]


# ---------------------------------------------------------------------------------------------- Q-Former

class QFormer(nn.Module):
    """K learnable queries aggregate visual tokens (B, N_v, dim_in) into identity tokens (B, K, dim)."""

    def __init__(self, num_queries: int, dim_in: int, dim: int, layers: int = 2, heads: int = 8,
                 width: int | None = None):
        super().__init__()
        width = width or dim
        self.queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)
        self.blocks = nn.ModuleList(_Block(width, heads, context_dim=dim_in) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim) if width != dim else nn.Identity()

    def forward(self, visual_tokens: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
        x = self.queries.to(visual_tokens.dtype).expand(visual_tokens.shape[0], -1, -1)  # (B, K, width)
        for block in self.blocks:
            x = block(x, visual_tokens, backend)
        return self.out(self.norm(x))


class VisualAdapter(nn.Module):
    """Reference encoder + Q-Former -> IdentityTokens for the DiT's Visual-Cross-Attention."""

    def __init__(self, cfg: VisualConfig, dim: int, latent_channels: int):
        super().__init__()
        problems = cfg.check()
        if problems:
            raise ValueError("invalid visual config: " + "; ".join(f"visual.{k}: {p}" for k, p in problems))
        self.cfg = cfg
        if cfg.encoder == "patch":
            self.encoder = PatchReferenceEncoder(latent_channels, cfg.encoder_dim, cfg.encoder_patch,
                                                 cfg.encoder_layers, cfg.encoder_heads)
        else:
            self.encoder = PretrainedReferenceEncoder(cfg.encoder_path)
        self.qformer = QFormer(cfg.num_queries, self.encoder.out_dim, dim, cfg.qformer_layers,
                               cfg.qformer_heads, cfg.qformer_dim or dim)
        # Token j belongs to region j // (K / R): contiguous, equal groups.
        per_region = cfg.num_queries // len(cfg.regions)
        self.register_buffer("token_region", torch.arange(cfg.num_queries) // per_region, persistent=False)

    def forward(self, reference_latent=None, reference_image=None, backend: str = "sdpa") -> IdentityTokens:
        if self.cfg.encoder == "patch":
            if reference_latent is None:
                raise ValueError("visual.encoder = 'patch' needs reference_latent (B, C, 1, h, w)")
            visual = self.encoder(reference_latent, backend)
        else:
            if reference_image is None:
                raise ValueError("visual.encoder = 'pretrained' needs reference_image (B, 3, H, W) in [-1, 1]")
            visual = self.encoder(reference_image, backend)
        return IdentityTokens(self.qformer(visual, backend), self.token_region)


# ------------------------------------------------------------------------------- cross-attention + loss

def localisation_loss(probs, query_region, token_region, valid=None) -> torch.Tensor:
    """L_loc = mean over (valid sample, head, in-region query i) of sum_j A_ij (1 - M_ij).

    probs A (B, H, L, K), rows normalised over the K identity tokens; query_region (B, L, R) bool, query i
    inside region r; token_region (K,) long, r(j); valid (B,) bool or None (False = sample excluded).
    M_ij = query_region[i, r(j)]. Queries inside no region are excluded. 0 (with a graph) if none count.
    One block's loss; the DiT averages it over the selected blocks (same queries in each, so this is the
    mean over blocks x heads x queries)."""
    B, H, L, K = probs.shape
    if query_region.shape[:2] != (B, L) or query_region.dtype != torch.bool:
        raise ValueError(f"query_region must be bool (B={B}, L={L}, R), got {query_region.dtype} "
                         f"{tuple(query_region.shape)}")
    if token_region.shape != (K,) or int(token_region.max()) >= query_region.shape[-1]:
        raise ValueError(f"token_region must be (K={K},) indices < R={query_region.shape[-1]}, "
                         f"got {tuple(token_region.shape)} max {int(token_region.max())}")
    inside = query_region[:, :, token_region]                               # (B, L, K): M_ij
    counted = query_region.any(-1)                                          # (B, L)
    if valid is not None:
        counted = counted & valid[:, None]
    outside_mass = (probs.float() * (~inside)[:, None].float()).sum(-1)     # (B, H, L): l_i per head
    total = (outside_mass * counted[:, None].float()).sum()
    return total / (counted.sum() * H).clamp(min=1)


class VisualCrossAttention(ProjectedAttention):
    """Per-block Visual-Cross-Attention: x (B, L, dim) attends to the K identity tokens.

    Pre-norm LayerNorm on x, RMSNorm qk-norm over the full width (as Wan's cross-attention), and a
    zero-initialised output projection: the residual is exactly 0 until training moves `o`."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, qk_norm: bool = True):
        super().__init__(dim, num_heads, eps, qk_norm, zero_output=True)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)

    def forward(self, x, ids: IdentityTokens, keep=None, backend: str = "sdpa", query_region=None):
        """-> (residual (B, L, dim), loc_loss scalar or None). keep (B,) bool: False masks every key of that
        sample (residual exactly 0, no loss); query_region (B, L, R) bool switches on the explicit path."""
        B, L, _ = x.shape
        if ids.tokens.shape[0] != B:
            raise ValueError(f"identity tokens have batch {ids.tokens.shape[0]}, x has batch {B}")
        K = ids.tokens.shape[1]
        key_mask = None if keep is None else keep.to(torch.bool)[:, None].expand(B, K)
        q, k, v = self.project(self.norm(x), ids.tokens)                     # (B, H, L|K, D)
        if query_region is None:
            out, loss = attention(q, k, v, key_mask=key_mask, backend=backend), None
        else:
            # Explicit fp32 probabilities: the loss needs A, which the entry point does not expose.
            probs = attention_probs(q, k, key_mask=key_mask)  # (B, H, L, K) fp32; all-masked rows -> 0
            out = (probs @ v.float()).to(x.dtype)
            loss = localisation_loss(probs, query_region, ids.token_region, keep)
        residual = self.o(merge_heads(out))
        if key_mask is not None:
            # o(0) = o.bias != 0 once trained: zero the residual so a dropped reference is exactly the
            # backbone alone (the unconditional branch classifier-free guidance needs).
            residual = torch.where(keep.to(torch.bool)[:, None, None], residual, torch.zeros_like(residual))
        return residual, loss


# ---------------------------------------------------------------------------------------- region masks

def select_region_masks(masks: torch.Tensor, names, regions) -> torch.Tensor:
    """A batch's region masks (B, T, len(names), H, W), mask r named names[r] -> (B, R, T, H, W) in the
    order of `regions` (model.visual.regions; the data source checks at start-up that it provides them)."""
    names = tuple(names)
    if masks.dim() != 5 or masks.shape[2] != len(names):
        raise ValueError(f"region masks must be (B, T, {len(names)}, H, W) over {names}, "
                         f"got {tuple(masks.shape)}")
    unknown = [r for r in regions if r not in names]
    if unknown:
        raise ValueError(f"visual.regions: region(s) {unknown} are not in this batch; it has {list(names)}")
    index = torch.tensor([names.index(r) for r in regions], device=masks.device)
    return masks.index_select(2, index).transpose(1, 2)


def region_masks_to_tokens(masks, num_latent_frames: int, temporal_stride: int, causal_first: bool,
                           spatial_stride, fraction: float = 0.25) -> torch.Tensor:
    """Per-pixel region masks (B, R, T, H, W) bool -> per-token masks (B, L, R), L = F * h * w in the DiT's
    (latent frame, row, column) order.

    spatial_stride: total pixels-per-token downsampling, int or (sh, sw) (Wan: VAE 16 x patch 2 = 32).
    Frames: causal_first -> latent 0 <-> frame 0, latent k >= 1 <-> frames s(k-1)+1 .. sk (T = 1 + s(F-1));
    else latent k <-> frames sk .. sk+s-1 (T = sF). A token is inside a region when at least `fraction`
    of its pixels over its frames are."""
    if masks.dim() != 5:
        raise ValueError(f"region masks must be (B, R, T, H, W), got {tuple(masks.shape)}")
    B, R, T, H, W = masks.shape
    sh, sw = (spatial_stride, spatial_stride) if isinstance(spatial_stride, int) else tuple(spatial_stride)
    if H % sh or W % sw:
        raise ValueError(f"region masks {H}x{W} are not divisible by the spatial stride {sh}x{sw}")
    Fl, s = num_latent_frames, temporal_stride
    expected = num_video_frames(Fl, s, causal_first)  # the shared rule of models/frames.py
    if T != expected:
        raise ValueError(f"region masks have {T} frames; {Fl} latent frames at temporal stride {s} "
                         f"({'causal first frame' if causal_first else 'no causal first frame'}) need {expected}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1] (got {fraction})")
    h, w = H // sh, W // sw
    cover = masks.float().view(B, R, T, h, sh, w, sw).mean((4, 6))         # (B, R, T, h, w)
    if causal_first:
        rest = cover[:, :, 1:].reshape(B, R, Fl - 1, s, h, w).mean(3)      # (B, R, F-1, h, w)
        cover = torch.cat([cover[:, :, :1], rest], 2)                      # (B, R, F, h, w)
    else:
        cover = cover.reshape(B, R, Fl, s, h, w).mean(3)
    inside = cover >= fraction - 1e-6
    return inside.permute(0, 2, 3, 4, 1).reshape(B, Fl * h * w, R)         # (B, L, R)
