"""Load, validate and save ActSync configs.

Merge order (later wins)::

    configs/schema.py defaults
      <- configs/base.yaml                       (all defaults, documented)
      <- experiment yaml                         (-e NAME -> configs/experiment/NAME.yaml,
                                                  or a path to any yaml, e.g. a saved
                                                  runs/.../resolved_config.yaml)
      <- command-line dotlist                    (data.resolution=128 eval.probe.steps=20)

Experiments are composed from groups (configs/<group>/<name>.yaml): ``method/`` (a paper row: only
what the paper changes), ``scale/`` (tiny, demo, synth, 5b: sizes, codec, training length), ``data/``
and ``hardware/`` (strategy, precision, devices). A yaml may start with ``extends: OTHER`` or
``extends: [A, B, ...]`` (names or paths): those are merged first, in order. A name is looked up as
configs/<name>.yaml (``scale/synth``), then beside the file that names it (``actavatar_stage2`` inside
method/), then configs/experiment/<name>.yaml. ``-e`` may be given several times
(``-e method/actavatar_stage2 -e scale/5b -e hardware/zero3``): later files win.

Every source is checked against the schema *before* it is merged, so an
unknown or misspelt key (nested too) fails at start-up with a ``ConfigError``
naming the full key, where it came from and the closest valid key::

    configs/experiment/x.yaml: unknown key 'data.resolutoin' (did you mean 'data.resolution'?)

Type errors (``data.fps=abc``) and value errors (``data.resolution=50``) name
the key and the source that set it.  ``save_config`` writes the resolved
config of a run atomically so a crash never leaves a half-written file.

Usage::

    from configs.loader import load_config, save_config
    cfg = load_config("smoke", ["data.resolution=128"])
    save_config(cfg, "runs/demo/data")   # -> runs/demo/data/resolved_config.yaml
"""

import difflib
import os
import typing
from collections.abc import Iterator, Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.atomic import atomic_write_text
from common.errors import ConfigError
from configs.schema import Config, check_config

CONFIG_DIR = Path(__file__).resolve().parent
REPO_ROOT = CONFIG_DIR.parent
BASE_YAML = CONFIG_DIR / "base.yaml"
EXPERIMENT_DIR = CONFIG_DIR / "experiment"
RESOLVED_CONFIG_NAME = "resolved_config.yaml"
COMMAND_LINE = "command line"


# --------------------------------------------------------------------------- public API


def load_config(experiment: "str | os.PathLike | Sequence | None" = None,
                overrides: Sequence[str] = ()) -> DictConfig:
    """Return the validated, typed config for ``experiment`` plus ``overrides``.

    ``experiment`` is a name (``demo``, ``method/actavatar_stage2``), a path to a yaml file, or a list
    of them merged in order; ``overrides`` are ``key=value`` strings.  Raises ``ConfigError``.
    """
    sources = [(display_path(BASE_YAML), _read_yaml(BASE_YAML))]
    experiments = [experiment] if isinstance(experiment, (str, os.PathLike)) else list(experiment or [])
    for name in experiments:
        if isinstance(name, tuple):  # (source, data): a config saved as data, e.g. config.json beside weights
            sources.append(name)
            continue
        sources += _experiment_sources(resolve_experiment(name), chain=())
    if overrides:
        sources.append((COMMAND_LINE, _parse_dotlist(overrides)))

    cfg = OmegaConf.structured(Config)
    origin: dict[str, str] = {}  # leaf key -> source that set it last, for value errors
    for source, data in sources:
        _check_keys(data, Config, source, prefix="")
        cfg = _merge(cfg, data, source)
        origin.update((key, source) for key in _leaf_keys(data, prefix=""))
    _derive_audio_rates(cfg, origin)
    _check_values(cfg, origin)
    return cfg


# model.audio.<key> is not a knob: it is the data's rate (one source of truth, so they cannot disagree).
DERIVED_AUDIO = {"fps": "data.fps", "sample_rate": "data.sample_rate"}


def _derive_audio_rates(cfg: DictConfig, origin: dict[str, str]) -> None:
    """Copy data.fps / data.sample_rate into model.audio; a yaml that sets a different value is an error
    (a saved resolved config repeats the same value and passes)."""
    for key, data_key in DERIVED_AUDIO.items():
        full_key = f"model.audio.{key}"
        wanted = OmegaConf.select(cfg, data_key)
        if full_key in origin and cfg.model.audio[key] != wanted:
            raise ConfigError(f"{origin[full_key]}: '{full_key}' ({cfg.model.audio[key]}) is taken from "
                              f"'{data_key}' ({wanted}); set {data_key} instead")
        cfg.model.audio[key] = wanted


def save_config(cfg: DictConfig, run_dir: "str | os.PathLike") -> Path:
    """Atomically write ``cfg`` (interpolations resolved) to ``run_dir/resolved_config.yaml``.

    The file is reloadable with ``load_config(path)`` / ``main.py -e path``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / RESOLVED_CONFIG_NAME
    text = ("# Resolved ActSync config; rerun with: python main.py <command> -e "
            f"{target}\n" + OmegaConf.to_yaml(cfg, resolve=True))
    return atomic_write_text(target, text)  # readers see the old or the new file only


def available_experiments() -> list[str]:
    """Names accepted by ``-e``: the yaml files under ``configs/experiment/``."""
    return sorted(path.stem for path in EXPERIMENT_DIR.glob("*.yaml"))


def available_groups() -> list[str]:
    """Group files accepted by ``-e`` and ``extends``: configs/<group>/<name>.yaml, e.g. 'scale/synth'."""
    return sorted(f"{path.parent.name}/{path.stem}" for path in CONFIG_DIR.glob("*/*.yaml")
                  if path.parent.name != "experiment")


def resolve_experiment(experiment: "str | os.PathLike", near: Path | None = None) -> Path:
    """Map an experiment name, group file name or yaml path to an existing file, or raise ``ConfigError``.
    `near`: the file that names it (bare names are looked up beside it first)."""
    text = str(experiment)
    available = ", ".join(available_experiments()) or "none"
    if not text.endswith((".yaml", ".yml")):
        candidates = [CONFIG_DIR / f"{text}.yaml"] + ([near.parent / f"{text}.yaml"] if near else [])
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None:
            return found
    if _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"experiment file not found: {text} "
                              f"(available experiments: {available})")
        return path
    path = EXPERIMENT_DIR / f"{text}.yaml"
    if not path.is_file():
        hint = _closest(text, available_experiments())
        raise ConfigError(f"unknown experiment '{text}'{hint}; available experiments: "
                          f"{available} (in {display_path(EXPERIMENT_DIR)}/); groups: "
                          f"{', '.join(available_groups())}")
    return path


def valid_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """All dotted keys of the schema, sections and leaves, e.g. 'data', 'data.fps'."""
    keys = []
    for name, kind in typing.get_type_hints(schema).items():
        keys.append(prefix + name)
        if is_dataclass(kind):
            keys += valid_keys(kind, prefix + name + ".")
    return keys


def display_path(path: "str | os.PathLike") -> str:
    """Path relative to the repo root when inside it (shorter, stable error messages)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- reading sources


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text


def _read_yaml(path: Path) -> dict:
    """Read a yaml file as a plain dict (interpolations kept unresolved)."""
    source = display_path(path)
    try:
        loaded = OmegaConf.load(path)
    except OSError as error:
        raise ConfigError(f"{source}: cannot read file: {error.strerror}") from error
    except Exception as error:  # yaml.YAMLError and OmegaConf errors; report on one line
        raise ConfigError(f"{source}: invalid YAML: {_one_line(str(error))}") from error
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{source}: top level must be a mapping of sections, "
                          f"got a {type(loaded).__name__}")
    return OmegaConf.to_container(loaded, resolve=False)


def _experiment_sources(path: Path, chain: tuple) -> list[tuple[str, dict]]:
    """[(source, data)] for an experiment and, first, the experiments it ``extends``."""
    source = display_path(path)
    if path.resolve() in chain:
        raise ConfigError(f"{source}: 'extends' loops back to itself")
    data = _read_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        return [(source, data)]
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{source}: 'extends' must be an experiment/group name or path, or a list of "
                          f"them, got {parents!r}")
    merged = []
    for parent in parents:
        try:
            parent_path = resolve_experiment(parent, near=path)
        except ConfigError as error:
            raise ConfigError(f"{source}: extends: {error}") from error
        merged += _experiment_sources(parent_path, chain + (path.resolve(),))
    return merged + [(source, data)]


def _parse_dotlist(overrides: Sequence[str]) -> dict:
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{COMMAND_LINE}: override '{item}' is not of the form key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{COMMAND_LINE}: cannot parse overrides: {_one_line(str(error))}") from error


# --------------------------------------------------------------------------- checking


def _check_keys(data: dict, schema: type, source: str, prefix: str) -> None:
    """Raise ``ConfigError`` for the first key in ``data`` that the schema lacks."""
    hints = typing.get_type_hints(schema)
    for key, value in data.items():
        full_key = prefix + str(key)
        if key not in hints:
            # Name the full leaf ('dta.resolution', not just 'dta') so the
            # suggestion can point at the exact key that was meant.
            leaf = _first_leaf(full_key, value)
            raise ConfigError(f"{source}: unknown key '{leaf}'{_suggestion(leaf, hints, prefix)}")
        kind = hints[key]
        if not is_dataclass(kind):
            continue  # a leaf: its type is checked by the merge
        if value is None:
            continue  # "section:" with every key commented out: nothing to merge
        if not isinstance(value, dict):
            example = next(iter(typing.get_type_hints(kind)))
            raise ConfigError(f"{source}: '{full_key}' is a section, not a value; "
                              f"set its keys instead (e.g. {full_key}.{example}=...)")
        _check_keys(value, kind, source, full_key + ".")


def _merge(cfg: DictConfig, data: dict, source: str) -> DictConfig:
    data = {key: value for key, value in data.items() if value is not None}  # empty sections
    try:
        return OmegaConf.merge(cfg, data)
    except OmegaConfBaseException as error:
        key = error.full_key or "?"
        raise ConfigError(f"{source}: invalid value for '{key}': {_error_text(error)}") from error


def _check_values(cfg: DictConfig, origin: dict[str, str]) -> None:
    """Resolve interpolations and run the schema's value checks."""
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        key = error.full_key or "?"
        source = origin.get(key, display_path(BASE_YAML))
        raise ConfigError(f"{source}: cannot resolve '{key}': {_error_text(error)}") from error
    problems = check_config(config)
    if problems:
        raise ConfigError("; ".join(
            f"{origin.get(key, 'schema defaults')}: invalid value for '{key}': {problem}"
            for key, problem in problems))


# --------------------------------------------------------------------------- helpers


def _leaf_keys(data: dict, prefix: str) -> Iterator[str]:
    for key, value in data.items():
        full_key = prefix + str(key)
        if isinstance(value, dict):
            yield from _leaf_keys(value, full_key + ".")
        else:
            yield full_key


def _first_leaf(full_key: str, value: Any) -> str:
    while isinstance(value, dict) and value:
        key, value = next(iter(value.items()))
        full_key += f".{key}"
    return full_key


def _suggestion(bad_key: str, hints: dict, prefix: str) -> str:
    hint = _closest(bad_key, valid_keys())
    if hint:
        return hint
    where = f"under '{prefix[:-1]}'" if prefix else "at top level"
    return f" (valid keys {where}: {', '.join(hints)})"


def _closest(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _error_text(error: OmegaConfBaseException) -> str:
    # OmegaConf appends "full_key: ... object_type=..." lines; the first line says it all.
    text = getattr(error, "msg", None) or str(error)
    return text.splitlines()[0].strip() if text.strip() else type(error).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())
