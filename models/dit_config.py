"""DiT hyper-parameters and named presets (one class, many sizes: code style rule 2).

`DiTConfig` describes the Wan2.2-TI2V backbone plus the switches of the ActAvatar text path (phase
embeddings, our phase-window bias). Presets:
- `wan2.2-ti2v-5b`: the released model exactly (Wan2.2 `wan/configs/wan_ti2v_5B.py`), 4,999,787,712 params;
- `synth`: the SynthAvatar model whose numbers we quote (sized for one GPU);
- `demo`: the CPU main-job size (trains in minutes on 2 cores);
- `tiny`: tests.
`in_channels`, `out_channels` and `text_dim` of 0 mean "take them from the codec / text encoder" when the
model is built by `models.build.build_model`. Trade-off: presets are Python dicts, not yaml, so the schema
can fill any field the user leaves unset (`None`) and the saved config shows the resolved numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


@dataclass
class DiTConfig:
    dim: int = 32
    ffn_dim: int = 64
    num_heads: int = 2
    num_layers: int = 2
    patch_size: list[int] = field(default_factory=lambda: [1, 2, 2])
    in_channels: int = 0            # 0 = the codec's latent channels
    out_channels: int = 0           # 0 = in_channels
    text_dim: int = 0               # 0 = the text encoder's width
    freq_dim: int = 256             # sinusoidal timestep embedding width
    eps: float = 1e-6
    rope_theta: float = 10000.0
    timestep_scale: float = 1000.0  # Wan embeds t * 1000 (t in [0, 1] here)
    mask_text_padding: bool = True  # Wan itself attends to its zero padding; False reproduces that
    attention_backend: str = "sdpa"
    phase_embedding: bool = True    # ActAvatar PACA: zero-init learnable e_k added to phase-k text tokens
    max_phases: int = 8
    phase_window_bias: bool = False  # ours: per-head zero-init logit bias inside the token's time window
    phase_window_bias_init: float = 0.0  # its starting value (0 keeps a converted Wan model unchanged; a
                                    # positive start points frames at their own phase from step 0)
    reference_concat: bool = False  # Wan2.1-I2V-style: frame-0 latent given to every frame (zero-init conv)
    temporal_stride: int = 4        # latent geometry, set from the codec by build_model
    causal_first: bool = True       # latent frame 0 <-> video frame 0 alone (Wan causal VAE)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.dim % self.num_heads:
            problems.append(("dim", f"must be divisible by num_heads ({self.dim} % {self.num_heads} != 0)"))
        elif self.head_dim % 2:
            problems.append(("num_heads", f"head_dim {self.head_dim} must be even for RoPE"))
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            problems.append(("patch_size", f"must be three positive ints [t, h, w] (got {self.patch_size})"))
        for name in ("dim", "ffn_dim", "num_heads", "num_layers", "freq_dim", "temporal_stride"):
            if getattr(self, name) < 1:
                problems.append((name, f"must be >= 1 (got {getattr(self, name)})"))
        if self.freq_dim % 2:
            problems.append(("freq_dim", f"must be even (got {self.freq_dim})"))
        from models.attention import BACKENDS  # local: keeps this module a plain dataclass file
        if self.attention_backend not in BACKENDS:
            problems.append(("attention_backend", f"unknown {self.attention_backend!r}; use one of {sorted(BACKENDS)}"))
        return problems


PRESETS: dict[str, dict] = {
    "wan2.2-ti2v-5b": dict(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_channels=48,
                           out_channels=48, text_dim=4096, mask_text_padding=False),
    # scale/synth (the GPU SynthAvatar runs): 192 wide, 8 blocks of 3 heads of 64, 7.1 M parameters with the
    # audio adapter; its bf16 weights (14.2 MB) come back from a GPU slot as one file (bench/gpu_suite.py).
    "synth": dict(dim=192, ffn_dim=768, num_heads=3, num_layers=8, freq_dim=128),
    # a wider GPU model for throughput benchmarks (named `synth` in bench/results/dit_cpu.json)
    "synth-wide": dict(dim=512, ffn_dim=2048, num_heads=8, num_layers=12),
    "demo": dict(dim=128, ffn_dim=512, num_heads=2, num_layers=6, freq_dim=128),
    "tiny": dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2, freq_dim=32),
}


def preset_config(name: str, **overrides) -> DiTConfig:
    """The preset's DiTConfig with `overrides` applied (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available: {sorted(PRESETS)}")
    known = {f.name for f in fields(DiTConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown DiT field(s) {bad}; known: {sorted(known)}")
    values = dict(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    return replace(DiTConfig(), **values)
