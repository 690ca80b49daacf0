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

from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import Iterator, Optional, get_type_hints

from models.audio import AudioConfig
from models.codec import CodecConfig
from models.dit_config import PRESETS, DiTConfig, preset_config
from models.text_encoders import TextConfig
from models.visual import VisualConfig

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
    """SynthAvatar generation (cached on disk) and data loading."""

    root: str = "cache/synthavatar"  # generated clips are cached here
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
class EvalConfig:
    """Evaluation metrics."""

    sync_max_offset: int = 15  # largest audio/video offset searched, in frames
    hit_fraction: float = 0.3  # share of a phase window that must show the action to count as a hit (H@S)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def check(self) -> list[Problem]:
        problems = _at_least(self, 0, "sync_max_offset")
        if not 0.0 < self.hit_fraction <= 1.0:
            problems.append(("hit_fraction", f"must be in (0, 1] (got {self.hit_fraction})"))
        return problems


# Every DiTConfig field, optional: None = "the preset's value" (models/dit_config.py PRESETS).
DiTOverrides = make_dataclass(
    "DiTOverrides", [(name, Optional[kind], None) for name, kind in get_type_hints(DiTConfig).items()])


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


@dataclass
class Config:
    """Root of the schema: one field per section."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


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
