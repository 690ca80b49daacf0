"""The Wan2.2-TI2V DiT with the conditioning modules of ActAvatar and SyncDreamer.

Maps (latents x (B, C, F, H, W), timesteps t, conditions) -> velocity (B, C, F, H, W); it does not know it
is a diffusion model (the objective is models/flow_matching.py, the sampler models/sampling.py).
Backbone = Wan2.2 `WanModel` (see models/dit_layers.py for the block); top-level names are Wan's own
(`patch_embedding`, `text_embedding.{0,2}`, `time_embedding.{0,2}`, `time_projection.1`, `head.*`), so an
original checkpoint loads directly and a diffusers one through models/convert.py.

Timesteps t in [0, 1] (embedded as t * timestep_scale = Wan's 0..1000) with shape (B,), (B, F) per latent
frame, or (B, L) per token (Wan2.2 TI2V: the clean first frame gets t = 0).

Conditions: a `models.contracts.Conditions` (every field optional except `text`; shapes written there):
the ActAvatar structured prompt (text, text_mask, text_phase, text_window, text_is_phase), per-video-frame
audio features, the reference latent / image (visual adapter), region tokens (SyncDreamer localisation
loss), keep_text / keep_audio / keep_image (False = that modality is dropped, the CFG "null"), and
record_text_attention. With return_aux=True the forward also returns an `AuxOutputs` (text attention
maps per layer, the localisation loss), filled by the blocks of this forward only.
Null conditions: dropped text = zero text features (Wan's empty context); dropped audio / image = every
key masked, so those cross-attentions add exactly zero.
Trade-off: the adapters live inside this module (one state dict, sharded as a whole by ZeRO-3) but are
built only when enabled, so the Wan keys stay exactly Wan's.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.attention import TimeBias
from models.contracts import AuxOutputs, Conditions
from models.dit_config import DiTConfig
from models.dit_layers import BlockInputs, Head, WanBlock
from models.frames import latent_frame_times
from models.rope import rope_angles, rope_tables


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Wan's timestep embedding: cat(cos, sin) of t * 10000^(-i/half), computed in float64. (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], 1)


class WanDiT(nn.Module):
    def __init__(self, cfg: DiTConfig, audio_cfg=None, visual_cfg=None):
        super().__init__()
        problems = cfg.check()
        if cfg.in_channels < 1 or cfg.text_dim < 1:
            problems.append(("in_channels/text_dim", "must be set (> 0) before building"))
        if problems:
            raise ValueError("invalid DiT config: " + "; ".join(f"{k}: {v}" for k, v in problems))
        self.cfg = cfg
        dim, out_channels = cfg.dim, cfg.out_channels or cfg.in_channels
        self.patch_size = tuple(cfg.patch_size)
        self.patch_embedding = nn.Conv3d(cfg.in_channels, dim, self.patch_size, self.patch_size)
        # Wan2.1-I2V gives the reference latent to every frame by channel concatenation; a separate zero-init
        # projection is the same linear map while keeping patch_embedding Wan2.2-shaped (weights still load).
        self.reference_embedding = None
        if cfg.reference_concat:
            self.reference_embedding = nn.Conv3d(cfg.in_channels, dim, self.patch_size, self.patch_size)
            nn.init.zeros_(self.reference_embedding.weight)
            nn.init.zeros_(self.reference_embedding.bias)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(
            WanBlock(dim, cfg.ffn_dim, cfg.num_heads, cfg.eps, layer=i, window_bias=cfg.phase_window_bias,
                     window_bias_init=cfg.phase_window_bias_init)
            for i in range(cfg.num_layers))
        self.head = Head(dim, out_channels * math.prod(self.patch_size), cfg.eps)
        # ActAvatar PACA: c'_i = c_i + e_k for tokens of phase k; zero-init so Wan's behaviour is kept at start.
        self.phase_embedding = nn.Embedding(cfg.max_phases + 1, dim) if cfg.phase_embedding else None
        self.audio_adapter = self.visual_adapter = None
        self._init_weights()
        if audio_cfg is not None:
            self._attach_audio(audio_cfg)
        if visual_cfg is not None and visual_cfg.enabled:
            self._attach_visual(visual_cfg)

    # ----------------------------------------------------------------------------------------- build
    def _init_weights(self):
        """Wan's init for training from scratch: xavier linears, N(0, 0.02) embeddings, zero output head."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for seq in (self.text_embedding, self.time_embedding):
            for m in seq:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)
        if self.phase_embedding is not None:
            nn.init.zeros_(self.phase_embedding.weight)

    def _attach_audio(self, audio_cfg):
        from models.audio import AudioAdapter, AudioCrossAttention
        self.audio_adapter = AudioAdapter(audio_cfg, self.cfg.dim, stride=self.cfg.temporal_stride)
        for block in self.blocks:  # f(l) = (l / L)^gamma with l = 1..L
            block.audio_attn = AudioCrossAttention(self.cfg.dim, self.cfg.num_heads, block.layer + 1,
                                                   self.cfg.num_layers, audio_cfg.gamma, self.cfg.eps,
                                                   audio_cfg.qk_norm)

    def _attach_visual(self, visual_cfg):
        from models.visual import VisualAdapter, VisualCrossAttention, resolve_loc_blocks
        self.visual_adapter = VisualAdapter(visual_cfg, self.cfg.dim, self.cfg.in_channels)
        loc_blocks = set(resolve_loc_blocks(visual_cfg, self.cfg.num_layers))
        for block in self.blocks:
            block.visual_attn = VisualCrossAttention(self.cfg.dim, self.cfg.num_heads, self.cfg.eps)
            block.compute_loc_loss = block.layer in loc_blocks

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions, return_aux: bool = False):
        tokens, e, e0, inp, grid = self.embed(x, t, cond)
        for block in self.blocks:
            tokens = block(tokens, e0, inp)
        out = self._unpatchify(self.head(tokens, e), grid)
        if not return_aux:
            return out
        return out, inp.aux

    def embed(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions):
        """Everything before the blocks: tokens (B, L, dim), e (B, G, dim), e0 (B, G, 6, dim), the blocks'
        inputs and the token grid (F', H', W'). Separate so that a parallel wrapper
        (models/sequence_parallel.py) can shard the token axis between embedding and blocks."""
        B, _, F, H, W = x.shape
        pt, ph, pw = self.patch_size
        if F % pt or H % ph or W % pw:
            raise ValueError(f"latent shape (F, H, W) = {(F, H, W)} is not divisible by patch {self.patch_size}")
        grid = (F // pt, H // ph, W // pw)
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, C, F', H', W') -> (B, L, dim)
        if self.reference_embedding is not None:
            tokens = tokens + self._reference_tokens(x, cond)
        e, e0 = self._embed_time(t, B, grid)
        return tokens, e, e0, self._block_inputs(x, cond, grid), grid

    def _reference_tokens(self, x: torch.Tensor, cond: Conditions) -> torch.Tensor:
        """The clean frame-0 latent (B, C, 1, H, W), repeated over frames and embedded: (B, L, dim).
        Zero for samples whose image condition is dropped (keep_image False)."""
        reference = (x[:, :, :1] if cond.reference is None else cond.reference).expand(-1, -1, x.shape[2], -1, -1)
        tokens = self.reference_embedding(reference).flatten(2).transpose(1, 2)
        keep = cond.keep_image
        return tokens if keep is None else tokens * keep.to(tokens.dtype)[:, None, None]

    def _embed_time(self, t: torch.Tensor, batch: int, grid) -> tuple[torch.Tensor, torch.Tensor]:
        """t (B,), (B, F) or (B, L) -> e (B, G, dim), e0 (B, G, 6, dim) in fp32, G in {1, F', L}."""
        L = math.prod(grid)
        t = t.reshape(batch, -1) if t.dim() else t.reshape(1, 1).expand(batch, 1)
        if t.shape[1] == grid[0] * self.patch_size[0] and self.patch_size[0] > 1:
            t = t[:, :: self.patch_size[0]]  # per latent frame -> per temporal patch
        if t.shape[1] not in (1, grid[0], L):
            raise ValueError(f"timesteps of shape {tuple(t.shape)}: expected (B,), (B, {grid[0]}) or (B, {L})")
        with torch.autocast(t.device.type, enabled=False):
            freq = sinusoidal_embedding(t.flatten() * self.cfg.timestep_scale, self.cfg.freq_dim)
            e = self.time_embedding(freq.to(self.time_embedding[0].weight.dtype)).float()
            e0 = self.time_projection(e).float()
        return e.view(batch, -1, self.cfg.dim), e0.view(batch, -1, 6, self.cfg.dim)

    def _frame_time(self, cond: Conditions, batch: int, num_frames: int, device) -> torch.Tensor:
        if cond.frame_time is not None:
            return cond.frame_time.to(device)
        times = latent_frame_times(num_frames, self.cfg.temporal_stride, self.cfg.causal_first)
        return times.to(device)[None].expand(batch, -1)

    def _block_inputs(self, x: torch.Tensor, cond: Conditions, grid) -> BlockInputs:
        B, F = x.shape[0], x.shape[2]
        tokens_per_frame = grid[1] * grid[2]
        frame_time = self._frame_time(cond, B, F, x.device)                       # (B, F)
        query_time = frame_time[:, :: self.patch_size[0]].repeat_interleave(tokens_per_frame, 1)  # (B, L)
        angles = rope_angles(grid, self.cfg.head_dim, self.cfg.rope_theta, x.device)  # (L, head_dim/2) float64
        inp = BlockInputs(rope=rope_tables(angles),
                          text=self._embed_text(cond, B), query_time=query_time,
                          backend=self.cfg.attention_backend,
                          record_text_attention=bool(cond.record_text_attention), aux=AuxOutputs())
        if self.cfg.mask_text_padding and cond.text_mask is not None:
            inp.text_mask = cond.text_mask.bool()
        if self.cfg.phase_window_bias and cond.text_window is not None:
            inp.text_time = TimeBias("text", query_time, cond.text_window.to(query_time.dtype),
                                     cond.text_is_phase.bool(), None)
        if self.audio_adapter is not None and cond.audio is not None:
            inp.audio = self.audio_adapter(cond.audio, F, self.cfg.temporal_stride, self.cfg.causal_first,
                                           frame_time)
            inp.keep_audio = cond.keep_audio
        if self.visual_adapter is not None:
            # I2V: frame 0 is the clean reference latent
            reference = x[:, :, :1] if cond.reference is None else cond.reference
            inp.visual = self.visual_adapter(reference_latent=reference, reference_image=cond.reference_image)
            inp.keep_image = cond.keep_image
            inp.region_tokens = cond.region_tokens
        return inp

    def _embed_text(self, cond: Conditions, batch: int) -> torch.Tensor:
        text = cond.text
        if cond.keep_text is not None:  # dropped text = zero features (the null context)
            text = text * cond.keep_text.to(text.dtype)[:, None, None]
        ctx = self.text_embedding(text.to(self.text_embedding[0].weight.dtype))  # (B, Lt, dim)
        if self.phase_embedding is not None and cond.text_phase is not None:
            phase = cond.text_phase.clamp(0, self.cfg.max_phases)
            if cond.keep_text is not None:
                phase = phase * cond.keep_text.long()[:, None]
            ctx = ctx + self.phase_embedding(phase)
        return ctx

    def _unpatchify(self, out: torch.Tensor, grid) -> torch.Tensor:
        """(B, L, pt*ph*pw*C) -> (B, C, F, H, W), tokens in (f, h, w) order, patch channels (pt, ph, pw, C)."""
        B = out.shape[0]
        f, h, w = grid
        pt, ph, pw = self.patch_size
        out = out.view(B, f, h, w, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, f, pt, h, ph, w, pw)
        return out.reshape(B, -1, f * pt, h * ph, w * pw)
