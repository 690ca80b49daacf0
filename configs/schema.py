"""Typed configuration schema for ActSync.

Every setting the code reads is declared here, one dataclass per top-level
section, and used through ``OmegaConf.structured(Config)``.  Because the
schema is the single source of truth, the loader (``configs/loader.py``) can
reject unknown or misspelt keys and wrongly typed values at start-up instead
of letting them silently fall back to defaults.

Adding a section (e.g. ``model`` or ``train``):

1. write a ``@dataclass class ModelConfig`` with defaulted fields;
2. add ``model: ModelConfig = field(default_factory=ModelConfig)`` to ``Config``;
3. optionally give it a ``check(self) -> list[Problem]`` method for value
   checks (``check_config`` finds it automatically, nested sections too);
4. mirror the defaults, with comments, in ``configs/base.yaml``
   (``tests/test_config.py`` fails if the two drift apart).

Value checks are deliberately cheap (no file-system access): they run on every
start-up, including ``main.py config``.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import get_type_hints

from datamodules.sources import DATA_SOURCE_KINDS
from models.audio_config import AudioConfig
from models.codec import CodecConfig
from models.dit_config import PRESETS, DiTConfig, preset_config
from models.flow_matching import PREDICTIONS, FlowMatchingConfig
from models.text_encoders import TextConfig
from models.visual import VisualConfig
from realvideo.config import PrepConfig
from rl.config import RLConfig

# (field name relative to its section, human-readable problem)
Problem = tuple[str, str]


def _at_least(section: object, minimum: float, *names: str) -> list[Problem]:
    """Problems for every named field whose value is below ``minimum``."""
    problems = []
    for name in names:
        value = getattr(section, name)
        if value < minimum:
            problems.append((name, f"must be >= {minimum} (got {value})"))
    return problems


def _positive(section: object, *names: str) -> list[Problem]:
    """Problems for every named field whose value is not strictly positive."""
    problems = []
    for name in names:
        value = getattr(section, name)
        if not value > 0:
            problems.append((name, f"must be > 0 (got {value})"))
    return problems


@dataclass
class RunConfig:
    """Identity of a run; outputs go to ``<output_dir>/<name>/<subcommand>``."""

    name: str = "default"
    output_dir: str = "runs"
    seed: int = 0  # global seed for anything not covered by a section seed


@dataclass
class DataConfig:
    """The data source (`kind`, datamodules/sources.py), its settings and data loading. fps and
    sample_rate are the clips' rates; the model's audio section takes them from here (configs/loader.py)."""

    kind: str = "synthavatar"  # the data source; registered kinds: datamodules/sources.py DATA_SOURCE_KINDS
    root: str = "cache/synthavatar"  # synthavatar: generated clips are cached here; `main.py prep`: its output
    manifest: str = ""  # `main.py prep`: the JSONL manifest of source videos (realvideo/manifest.py)
    seed: int = 0  # generation seed; clips are a pure function of (seed, split, index)
    resolution: int = 64  # square frame side in pixels
    fps: int = 25
    duration: float = 4.0  # seconds per clip
    sample_rate: int = 16000  # audio sample rate in Hz
    num_train: int = 256  # clips per split
    num_val: int = 32
    num_test: int = 32
    min_phases: int = 1  # phase blocks (timed actions) per clip: drawn from [min_phases, max_phases]
    max_phases: int = 4
    gen_workers: int = 2  # processes used to generate clips
    batch_size: int = 8
    loader_workers: int = 0  # DataLoader workers (0 = load in the main process)
    preview_clips: int = 4  # clips rendered by `main.py data --preview`

    def check(self) -> list[Problem]:
        problems = []
        if self.kind not in DATA_SOURCE_KINDS:
            problems.append(("kind", f"unknown data source {self.kind!r}; registered: {sorted(DATA_SOURCE_KINDS)}"))
        # Multiples of 32 let conv encoders halve the frame up to 5 times exactly.
        if self.resolution <= 0 or self.resolution % 32 != 0:
            problems.append(("resolution", "must be a positive multiple of 32, e.g. 64, 128 or 256 "
                             f"(got {self.resolution})"))
        problems += _positive(self, "fps", "duration", "sample_rate", "batch_size")
        problems += _at_least(self, 0, "num_train", "num_val", "num_test", "gen_workers",
                              "loader_workers", "preview_clips")
        problems += _at_least(self, 1, "min_phases")
        if self.min_phases > self.max_phases:
            problems.append(("min_phases", f"must be <= data.max_phases "
                             f"(got {self.min_phases} > {self.max_phases})"))
        return problems


@dataclass
class ProbeConfig:
    """Small learned probe used by evaluation metrics; trained once, then cached."""

    cache_dir: str = "cache/probe"
    seed: int = 0
    num_frames: int = 20000  # training frames drawn from generated clips
    steps: int = 1000
    batch_size: int = 96
    lr: float = 1.5e-3
    width: int = 32  # base channel width of the probe network
    detector_clips: int = 1500  # synthetic pose-track sequences for the action detector
    detector_steps: int = 1200

    def check(self) -> list[Problem]:
        return (_positive(self, "num_frames", "batch_size", "lr", "width", "detector_clips")
                + _at_least(self, 0, "steps", "detector_steps"))


@dataclass
class RealMetricsConfig:
    """Real-video metrics (data.kind=real; evaluation/real_metrics.py): model files the user supplies."""

    syncnet: str = ""  # syncnet_python state dict (syncnet_v2.model) -> Sync-C / Sync-D / offset ('' = skip)
    arcface: str = ""  # ArcFace ONNX (e.g. insightface w600k_r50.onnx) -> CSIM ('' = skip)
    inception: str = ""  # Inception TorchScript (StyleGAN's inception-2015-12-05.pt) -> FID ('' = skip)
    i3d: str = ""  # I3D TorchScript (StyleGAN-V's i3d_torchscript.pt) -> FVD ('' = skip)
    vshift: int = 15  # SyncNet: largest offset searched, frames
    crop_scale: float = 0.4  # SyncNet face crop margin (syncnet_python's default)
    frame_step: int = 4  # CSIM / FID: every k-th frame
    fvd_frames: int = 16  # FVD: frames per window (windows do not overlap)

    def check(self) -> list[Problem]:
        problems = _at_least(self, 1, "vshift", "frame_step", "fvd_frames")
        if not 0 <= self.crop_scale <= 2:
            problems.append(("crop_scale", f"must be in [0, 2] (got {self.crop_scale})"))
        return problems


@dataclass
class EvalConfig:
    """Evaluation metrics."""

    sync_max_offset: int = 15  # largest audio/video offset searched, in frames
    hit_fraction: float = 0.3  # share of a phase window that must show the action to count as a hit (H@S)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    real: RealMetricsConfig = field(default_factory=RealMetricsConfig)

    def check(self) -> list[Problem]:
        problems = _at_least(self, 0, "sync_max_offset")
        if not 0.0 < self.hit_fraction <= 1.0:
            problems.append(("hit_fraction", f"must be in (0, 1] (got {self.hit_fraction})"))
        return problems


# Every DiTConfig field, optional: None = "the preset's value" (models/dit_config.py PRESETS).
DiTOverrides = make_dataclass(
    "DiTOverrides", [(name, kind | None, None) for name, kind in get_type_hints(DiTConfig).items()])


@dataclass
class ModelConfig:
    """The DiT (a named preset + per-field overrides) and its conditioning modules."""

    preset: str = "demo"  # tiny | demo | synth | wan2.2-ti2v-5b
    init_from: str = ""  # local Wan2.2 DiT checkpoint (file or directory; Wan or diffusers names) to load
    dit: DiTOverrides = field(default_factory=DiTOverrides)
    text: TextConfig = field(default_factory=TextConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    visual: VisualConfig = field(default_factory=lambda: VisualConfig(enabled=False))
    codec: CodecConfig = field(default_factory=CodecConfig)

    def dit_config(self) -> DiTConfig:
        """The preset with the overrides applied (in/out channels and text_dim may still be 0 = auto)."""
        overrides = {f.name: getattr(self.dit, f.name) for f in fields(self.dit)}
        return preset_config(self.preset, **overrides)

    def check(self) -> list[Problem]:
        if self.preset not in PRESETS:
            return [("preset", f"unknown preset {self.preset!r}; available: {', '.join(sorted(PRESETS))}")]
        return [("dit." + name, problem) for name, problem in self.dit_config().check()]


STRATEGIES = ("auto", "ddp", "deepspeed_zero3")
PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed")
LOGGERS = ("wandb", "csv", "none")


def _one_of(section: object, name: str, choices: tuple) -> list[Problem]:
    value = getattr(section, name)
    return [] if value in choices else [(name, f"must be one of {', '.join(choices)} (got {value!r})")]


@dataclass
class StrategyConfig:
    """How a built model is placed and sharded (lightning_modules/trainer.py)."""

    name: str = "auto"  # auto (one device) | ddp | deepspeed_zero3
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int = 1  # processes per node
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed | bf16-true (| 16-mixed on GPU)
    activation_checkpointing: bool = False  # recompute each DiT block in backward (models/parallel.py)
    offload_optimizer: bool = False  # ZeRO-3: optimizer states in CPU memory
    offload_params: bool = False  # ZeRO-3: parameters in CPU memory

    def check(self) -> list[Problem]:
        return (_one_of(self, "name", STRATEGIES) + _one_of(self, "precision", PRECISIONS)
                + _one_of(self, "accelerator", ("auto", "cpu", "gpu", "cuda")) + _positive(self, "devices", "num_nodes"))


@dataclass
class LoggerConfig:
    """Experiment tracking. A CSV log (metrics.csv) is always written next to the checkpoints."""

    kind: str = "wandb"  # wandb | csv | none
    project: str = "actsync"
    mode: str = "offline"  # offline (default; `wandb sync` later) | online | disabled
    group: str = ""  # W&B group; "" = run.name (sweeps group runs by variant)
    tags: list[str] = field(default_factory=list)
    log_every: int = 10  # steps between logged training scalars

    def check(self) -> list[Problem]:
        return (_one_of(self, "kind", LOGGERS) + _one_of(self, "mode", ("offline", "online", "disabled"))
                + _positive(self, "log_every"))


@dataclass
class TrainConfig:
    """One training stage: what is trained, for how long, how it is checkpointed and logged."""

    stage: str = "single"  # label only (logged, shown in tables)
    init_from: str = ""  # weights of an earlier stage: a run dir (runs/NAME/fit), .ckpt or .safetensors
    trainable: list[str] = field(default_factory=lambda: [".*"])  # regexes on DiT parameter names; rest frozen
    max_steps: int = 400
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 20
    lr_schedule: str = "cosine"  # cosine (to 10%) | constant
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    ema_decay: float = 0.995  # EMA of the trained weights, used for generation; 0 = off
    ckpt_every: int = 100  # steps between full checkpoints (also on SIGTERM / SIGUSR1)
    keep_last: int = 2  # step checkpoints kept
    val_every: int = 100  # steps between validation passes; 0 = only at the end
    val_batches: int = 2
    sample_clips: int = 2  # validation clips generated (mp4, logged to W&B) after each validation; 0 = off
    snapshot_at: list[int] = field(default_factory=list)  # steps whose generation weights are also exported
    condition_cache: str = ""  # directory of per-clip encoder outputs (datamodules/condition_cache.py); '' = off
    flow: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def check(self) -> list[Problem]:
        problems = _positive(self, "max_steps", "lr", "ckpt_every", "keep_last")
        problems += _at_least(self, 0, "warmup_steps", "grad_clip", "val_every", "val_batches", "weight_decay",
                              "sample_clips")
        problems += _one_of(self, "lr_schedule", ("cosine", "constant"))
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(("ema_decay", f"must be in [0, 1) (got {self.ema_decay})"))
        if any(not 0 < step <= self.max_steps for step in self.snapshot_at):
            problems.append(("snapshot_at", f"steps must be in 1..max_steps={self.max_steps} (got {self.snapshot_at})"))
        if not self.trainable:
            problems.append(("trainable", "must name at least one parameter pattern (use ['.*'] for all)"))
        for pattern in self.trainable:
            try:
                re.compile(pattern)
            except re.error as error:
                problems.append(("trainable", f"bad regex {pattern!r}: {error}"))
        if self.flow.prediction not in PREDICTIONS:
            problems.append(("flow.prediction", f"must be one of {', '.join(PREDICTIONS)} (got {self.flow.prediction!r})"))
        if self.flow.timestep_dist not in ("uniform", "logit_normal"):
            problems.append(("flow.timestep_dist", f"must be uniform or logit_normal (got {self.flow.timestep_dist!r})"))
        problems += [(f"flow.{key}", f"must be >= 0 (got {getattr(self.flow, key)})")
                     for key in ("motion_weight", "reference_noise") if getattr(self.flow, key) < 0]
        if self.ema_decay > 0 and self.strategy.name == "deepspeed_zero3":
            problems.append(("ema_decay", "EMA is not supported with deepspeed_zero3 (sharded weights); set 0"))
        return problems


@dataclass
class SampleConfig:
    """Generation (main.py generate, validation samples): sampler and guidance."""

    steps: int = 20
    solver: str = "euler"  # euler | heun
    text_scale: float = 1.0  # ActAvatar uses 5.0 for both on Wan2.2; >1 costs 3 passes per step
    audio_scale: float = 1.0
    use_ema: bool = True
    seed: int = 0
    batch_size: int = 4
    num_clips: int = 0  # held-out clips generated by `generate --split`; 0 = the whole split
    side_by_side: bool = False  # also write generated | ground truth videos
    attention_plot: bool = True  # Fig. 4: cross-attention mass per phase over time (PNG)
    # Audio longer than a window is generated as chained windows (inference/windows.py).
    window_frames: int = 0  # window length in video frames; 0 = the training clip (data.duration * data.fps)
    motion_frames: int = 5  # last frames of a window that start the next (the overlap); 1 + 4j for Wan's codec
    window_reference: str = "image"  # what conditions window k > 0 as "the reference": image (the reference
                                     # image's latent) | motion (its first frame, as in training)
    device: str = "auto"  # where generation runs: auto (cuda when available) | cpu | cuda
    guidance_parallel: int = 1  # `generate --parallel`: ranks sharing the CFG passes (1-3); world / this = sequence

    def check(self) -> list[Problem]:
        return (_positive(self, "steps", "batch_size", "motion_frames") + _one_of(self, "solver", ("euler", "heun"))
                + _at_least(self, 0, "num_clips", "window_frames")
                + _one_of(self, "window_reference", ("motion", "image")) + _one_of(self, "device", ("auto", "cpu", "cuda"))
                + _one_of(self, "guidance_parallel", (1, 2, 3)))


@dataclass
class Config:
    """Root of the schema: one field per section."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)

    def check(self) -> list[Problem]:
        """Checks that span sections."""
        if self.model.init_from and self.train.flow.prediction != "velocity":
            return [("train.flow.prediction", f"is {self.train.flow.prediction!r}, but model.init_from loads "
                     "Wan2.2 weights, which predict velocity; use train.flow.prediction=velocity")]
        return []


def check_config(config: Config) -> list[tuple[str, str]]:
    """Run every section's ``check`` and return ``(full_key, problem)`` pairs.

    ``config`` must be a real ``Config`` instance (``OmegaConf.to_object``),
    not a DictConfig, so the section methods are available.
    """
    return list(_walk_checks(config, prefix=""))


def _walk_checks(section: object, prefix: str) -> Iterator[tuple[str, str]]:
    check = getattr(section, "check", None)
    if callable(check):
        for name, problem in check():
            yield prefix + name, problem
    for f in fields(section):
        value = getattr(section, f.name)
        if is_dataclass(value):
            yield from _walk_checks(value, prefix + f.name + ".")
