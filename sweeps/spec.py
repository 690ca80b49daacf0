"""Sweep files (configs/sweeps/*.yaml): a grid of variants x seeds, each variant a chain of stages.

    name: actavatar_table4          # runs go to runs/sweeps/<name>/<variant>/seed<k>/<stage>
    prerequisites: [syncdreamer_stage1]   # experiments trained once before the grid (skipped if done)
    seeds: [0, 1]
    eval_clips: 16                  # held-out test clips generated and scored per run (0 = all)
    overrides: [train.max_steps=300]      # key=value applied to every stage of every variant
    variants:                       # label: [experiment, ...]; stage k>0 starts from stage k-1's weights
      global prompt: [actavatar_global]
      full two-stage: [actavatar_stage1, actavatar_stage2]

Unknown keys, unknown experiments and malformed entries fail before anything runs (one line naming the
file and the fault). Trade-off: a variant is an experiment name, not inline config, so every row is a
reviewable yaml under configs/experiment/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from configs.loader import ConfigError, load_config, resolve_experiment

KEYS = {"name", "prerequisites", "seeds", "eval_clips", "overrides", "variants", "metrics"}
DEFAULT_METRICS = ["sync_c", "h_at_s", "aa", "tc", "csim", "fvd"]


@dataclass
class SweepSpec:
    name: str
    variants: dict[str, list[str]]
    seeds: list[int] = field(default_factory=lambda: [0])
    prerequisites: list[str] = field(default_factory=list)
    eval_clips: int = 0
    overrides: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    source: str = ""


def _fail(path: Path, message: str):
    raise ConfigError(f"{path}: {message}")


def load_sweep(path: Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict):
        _fail(path, "top level must be a mapping")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        _fail(path, f"unknown key(s) {unknown}; valid: {sorted(KEYS)}")
    for key in ("name", "variants"):
        if key not in data:
            _fail(path, f"missing '{key}'")
    variants = data["variants"]
    if not isinstance(variants, dict) or not variants:
        _fail(path, "'variants' must map a label to a list of experiments")
    for label, stages in variants.items():
        if isinstance(stages, str):
            variants[label] = stages = [stages]
        if not isinstance(stages, list) or not stages:
            _fail(path, f"variant '{label}' must be a non-empty list of experiment names")
    spec = SweepSpec(name=str(data["name"]), variants=variants, source=str(path),
                     **{k: data[k] for k in ("seeds", "prerequisites", "eval_clips", "overrides", "metrics")
                        if k in data})
    if not spec.seeds or not all(isinstance(s, int) for s in spec.seeds):
        _fail(path, f"'seeds' must be a list of integers (got {spec.seeds})")
    for experiment in spec.prerequisites + [e for stages in variants.values() for e in stages]:
        try:
            resolve_experiment(experiment)
        except ConfigError as error:
            _fail(path, str(error))
    for stages in variants.values():  # every run's config must load (bad overrides fail here, not mid-sweep)
        for stage in stages:
            load_config(stage, spec.overrides)
    return spec
