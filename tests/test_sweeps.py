"""Sweep files, the job plan (shared stages, stage chaining, skipping) and the ablation table."""
import json

import pytest

from configs.loader import ConfigError
from sweeps.runner import plan
from sweeps.spec import load_sweep
from sweeps.table import aggregate, write_table


def _sweep(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_shipped_sweeps_load():
    for name in ("actavatar_table4", "syncdreamer"):
        spec = load_sweep(f"configs/sweeps/{name}.yaml")
        assert spec.variants and spec.seeds


def test_plan_chains_stages_and_trains_shared_stages_once(tmp_path):
    spec = load_sweep(_sweep(tmp_path, """
name: t
seeds: [0, 1]
overrides: [train.max_steps=3]
variants:
  a: [actavatar_stage1, actavatar_stage2]
  b: [actavatar_stage1, actavatar_window_bias]
"""))
    jobs = plan(spec, "out")
    fits = [j for j in jobs if j.kind == "fit"]
    assert len(fits) == 6  # stage 1 once per seed, shared by a and b; two stage-2 runs per seed
    stage2_b = [j for j in fits if "actavatar_window_bias" in j.argv and "run.seed=1" in j.argv][0]
    assert "train.init_from=out/sweeps/t/a/seed1/actavatar_stage1/fit" in stage2_b.argv
    assert "train.max_steps=3" in stage2_b.argv
    assert [j.kind for j in jobs].count("evaluate") == 4


def test_bad_sweep_files_fail_before_running(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_sweep(_sweep(tmp_path, "name: t\nvariants: {a: [demo]}\nsedes: [0]\n"))
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        load_sweep(_sweep(tmp_path, "name: t\nvariants: {a: [nope]}\n"))
    with pytest.raises(ConfigError, match="unknown key 'train.max_stepz'"):
        load_sweep(_sweep(tmp_path, "name: t\nvariants: {a: [demo]}\noverrides: [train.max_stepz=3]\n"))


def test_table_is_mean_and_std_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = load_sweep(_sweep(tmp_path, "name: t\nseeds: [0, 1]\nvariants: {a: [demo], b: [demo]}\n"))
    for variant, values in (("a", (0.5, 0.7)), ("b", (0.2, None))):
        for seed, value in enumerate(values):
            if value is not None:
                d = tmp_path / variant / str(seed)
                d.mkdir(parents=True)
                (d / "metrics.json").write_text(json.dumps({"summary": {"h_at_s": [value, 0.3]}}))
    text = write_table(spec, str(tmp_path / "runs"), lambda v, s: tmp_path / v / str(s))
    assert "| a (n=2) | – " not in text and "0.600 ± 0.100" in text  # mean and std over the two seeds
    assert "b (n=1)" in text and "0.200 ± 0.300" in text          # one seed: the per-clip spread
    assert aggregate([{"h_at_s": [1.0, 0.0]}], ["h_at_s", "tc"]) == {"h_at_s": (1.0, 0.0)}
    assert (tmp_path / "runs" / "sweeps" / "t" / "table.md").is_file()
