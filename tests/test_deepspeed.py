"""DeepSpeed ZeRO-3 through `main.py fit` on CPU processes (gloo), via the test-only shim
(tests/support/deepspeed_cpu.py): sharded step checkpoints, resume with another world size (universal
checkpoint), consolidated export; plus the SLURM and precision choices of the trainer builder.

One 2-process run (module fixture) is shared. The processes are checked through what they wrote, not only
their exit status: about one multi-process run in five prints "terminate called without an active
exception" at exit after everything has been written.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "tests" / "support" / "fit_with_cpu_deepspeed.py"
TERMINATE = "terminate called without an active exception"
DIST_VARIABLES = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR",
                  "MASTER_PORT", "TORCHELASTIC_RUN_ID"}


def _overrides(root: Path, output_dir: Path) -> list[str]:
    return ["-e", "smoke", f"run.output_dir={output_dir}", f"data.root={root / 'data'}",
            f"model.codec.cache_dir={root / 'codec'}", "data.duration=1.2", "data.batch_size=2",
            "model.preset=tiny", "train.logger.kind=csv", "train.logger.log_every=1", "train.ema_decay=0",
            "train.strategy.name=deepspeed_zero3", "train.strategy.accelerator=cpu", "train.val_batches=0",
            "train.ckpt_every=2", "train.keep_last=3"]


def _fit(root: Path, output_dir: Path, devices: int, max_steps: int, resume: bool = False, env: dict | None = None):
    cmd = [sys.executable, str(LAUNCHER), "fit", *_overrides(root, output_dir), "--quiet",
           f"train.strategy.devices={devices}", f"train.max_steps={max_steps}"] + (["--resume", "auto"] * resume)
    # a clean launch environment: in-process DDP tests of the same worker may have left rank variables behind
    clean = {k: v for k, v in os.environ.items() if k not in DIST_VARIABLES and not k.startswith(("SLURM_", "PL_"))}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=clean | (env or {}))
    print(f"fit devices={devices} max_steps={max_steps}: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0 or TERMINATE in proc.stderr, (proc.stdout[-3000:], proc.stderr[-6000:])
    return proc


def _train_losses(run_dir: Path) -> dict[int, float]:
    import csv
    with open(run_dir / "logs" / "metrics.csv") as f:
        return {int(row["step"]): float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")}


def _optim_shards(checkpoint: Path) -> list[dict]:
    files = sorted((checkpoint / "checkpoint").glob("*optim_states.pt"))
    return [torch.load(f, map_location="cpu", weights_only=False)["optimizer_state_dict"] for f in files]


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory):
    """4 steps of the tiny preset, ZeRO-3 over 2 CPU processes, checkpoints at steps 2 and 4."""
    root = tmp_path_factory.mktemp("zero3")
    proc = _fit(root, root / "runs", devices=2, max_steps=4)
    return {"root": root, "run_dir": root / "runs" / "smoke" / "fit", "proc": proc}


def test_zero3_two_processes_write_complete_sharded_checkpoints(zero3_run):
    from lightning_modules.checkpoints import find_resume_checkpoint

    run_dir = zero3_run["run_dir"]
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000002.ckpt", "step-00000004.ckpt"]
    final = find_resume_checkpoint(checkpoints)
    assert final == checkpoints / "step-00000004.ckpt"
    assert (final / "latest").read_text().strip() == "checkpoint"
    tag = final / "checkpoint"
    assert len(list(tag.glob("zero_pp_rank_*_mp_rank_00_model_states.pt"))) == 2
    # Really sharded: each rank holds about half of the fp32 weights and of each Adam moment, and the
    # model-state files hold no full copy of any parameter.
    total = sum(t.numel() for t in load_file(run_dir / "weights.safetensors").values())
    shards = _optim_shards(final)
    assert [s["partition_count"] for s in shards] == [2, 2]
    for shard in shards:
        numel = sum(t.numel() for t in shard["fp32_flat_groups"])
        assert total / 2 <= numel <= total / 2 + 200, (numel, total)  # + per-tensor padding to even sizes
        moments = shard["optimizer_state_dict"]["state"][0]
        assert moments["exp_avg"].numel() == moments["exp_avg_sq"].numel() == numel
        assert float(moments["step"]) == 4
    model_states = torch.load(tag / "zero_pp_rank_0_mp_rank_00_model_states.pt", map_location="cpu",
                              weights_only=False)
    assert sum(v.numel() for v in model_states["module"].values()) == 0
    assert model_states["global_step"] == 4 and model_states["dp_world_size"] == 2
    losses = _train_losses(run_dir)
    assert sorted(losses) == [0, 1, 2, 3] and all(torch.isfinite(torch.tensor(list(losses.values()))))
    # the fit ends with consolidated weights (rank 0 exports the final step checkpoint)
    meta = json.loads((run_dir / "weights.json").read_text())
    assert meta["global_step"] == 4 and meta["world_size"] == 2 and meta["source"] == str(final)


def test_zero3_checkpoint_from_two_processes_resumes_with_one(zero3_run, tmp_path):
    from lightning_modules.export import consolidate

    source = zero3_run["run_dir"] / "checkpoints" / "step-00000004.ckpt"
    run_dir = tmp_path / "runs" / "smoke" / "fit"
    shutil.copytree(source, run_dir / "checkpoints" / source.name)
    saved, _ = consolidate(source)
    loaded_file = tmp_path / "loaded.safetensors"
    proc = _fit(zero3_run["root"], tmp_path / "runs", devices=1, max_steps=6, resume=True,
                env={"ACTSYNC_TEST_DUMP_LOADED": str(loaded_file)})
    assert "resume: step-00000004.ckpt was written by 2 processes, this run has 1" in proc.stdout
    copied = run_dir / "checkpoints" / source.name
    assert (copied / "latest_universal").read_text() == "checkpoint_universal"
    assert (copied / "checkpoint_universal" / "zero").is_dir() and not list(copied.glob(".checkpoint_universal.tmp-*"))
    # parameters right after loading, before the first step, are exactly the saved ones
    loaded = load_file(loaded_file)
    assert sorted(loaded) == sorted(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    # ... and training continues to max_steps with the optimizer state carried over (AdamW step count 6,
    # not 2), now one shard per (single) rank
    final = run_dir / "checkpoints" / "step-00000006.ckpt"
    shards = _optim_shards(final)
    assert len(shards) == 1 and float(shards[0]["optimizer_state_dict"]["state"][0]["step"]) == 6
    assert sorted(_train_losses(run_dir)) == [4, 5]
    assert json.loads((run_dir / "weights.json").read_text())["global_step"] == 6


def test_export_cli_weights_load_strictly_into_a_fresh_dit(zero3_run, tmp_path):
    from configs.loader import load_config
    from lightning_modules.export import export_weights
    from system.build import build_system
    from system.weights import read_weights

    run_dir = zero3_run["run_dir"]
    checkpoint = run_dir / "checkpoints" / "step-00000004.ckpt"
    out16 = tmp_path / "dit-bf16.safetensors"
    proc = subprocess.run([sys.executable, "main.py", "export", "--checkpoint", str(checkpoint), "--dtype", "bf16",
                           "--out", str(out16)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"-> {out16}" in proc.stdout
    out32 = export_weights(checkpoint, tmp_path / "dit.safetensors")
    fp32, bf16 = load_file(out32), load_file(out16)
    # the same weights the fit consolidated at its end; bf16 is their rounding
    at_fit_end = load_file(run_dir / "weights.safetensors")
    assert sorted(fp32) == sorted(at_fit_end) and all(torch.equal(fp32[k], at_fit_end[k]) for k in fp32)
    assert all(bf16[k].dtype == torch.bfloat16 and torch.equal(bf16[k], fp32[k].to(torch.bfloat16)) for k in fp32)
    assert json.loads(out16.with_suffix(".json").read_text())["global_step"] == 4
    # a fresh WanDiT built from the run's own config takes them with strict=True, as generation does
    system = build_system(load_config(str(run_dir / "resolved_config.yaml")), progress=False, load_init=False)
    system.model.load_state_dict(read_weights(out32), strict=True)
    system.model.load_state_dict(load_file(out16), strict=True)


def test_export_lightning_ckpt_uses_ema_shadow_unless_no_ema(tmp_path):
    from lightning_modules.export import export_weights

    checkpoint = tmp_path / "step-00000007.ckpt"
    torch.save({"global_step": 7, "optimizer_states": [],
                "state_dict": {"model.a": torch.zeros(2), "model.b": torch.ones(3), "text_encoder.w": torch.ones(1)},
                "ema": {"updates": 7, "decay": 0.9, "shadow": {"a": torch.full((2,), 5.0)}}}, checkpoint)
    averaged = load_file(export_weights(checkpoint))  # default: next to it, step-00000007.safetensors
    assert sorted(averaged) == ["a", "b"] and averaged["a"].tolist() == [5.0, 5.0] and averaged["b"].sum() == 3
    meta = json.loads((tmp_path / "step-00000007.json").read_text())
    assert meta["ema"] is True and meta["global_step"] == 7
    raw = load_file(export_weights(checkpoint, tmp_path / "raw.safetensors", ema=False))
    assert raw["a"].tolist() == [0.0, 0.0]


def test_trainer_builder_slurm_environment_and_zero3_precision(tmp_path, monkeypatch):
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from omegaconf import OmegaConf

    from configs.loader import ConfigError, load_config
    from lightning_modules.trainer import build_strategy, build_trainer, trainer_precision

    cfg = OmegaConf.to_object(load_config("smoke", [f"run.output_dir={tmp_path}", "train.logger.kind=csv",
                                                     "train.strategy.accelerator=cpu"]))
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    assert not isinstance(build_trainer(cfg, tmp_path, [], progress=False)._accelerator_connector.cluster_environment,
                          SLURMEnvironment)
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "actsync-fit", "SLURM_JOB_ID": "42",
                        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                        "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(name, value)
    environment = build_trainer(cfg, tmp_path, [], progress=False)._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue is False  # the sbatch script requeues
    # ZeRO-3 bf16-mixed = DeepSpeed torch autocast over fp32 sharded weights; half-precision weights are refused
    strategy_cfg = cfg.train.strategy
    strategy_cfg.name, strategy_cfg.precision = "deepspeed_zero3", "bf16-mixed"
    assert build_strategy(strategy_cfg).config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert trainer_precision(strategy_cfg) == "32-true"
    strategy_cfg.precision = "bf16-true"
    with pytest.raises(ConfigError, match="bf16-true is not supported with deepspeed_zero3"):
        build_strategy(strategy_cfg)


@pytest.mark.slow
def test_zero3_checkpoint_from_one_process_resumes_with_two(zero3_run, tmp_path):
    from lightning_modules.export import consolidate

    _fit(zero3_run["root"], tmp_path / "runs", devices=1, max_steps=2)
    run_dir = tmp_path / "runs" / "smoke" / "fit"
    saved, _ = consolidate(run_dir / "checkpoints" / "step-00000002.ckpt")
    loaded_file = tmp_path / "loaded.safetensors"
    proc = _fit(zero3_run["root"], tmp_path / "runs", devices=2, max_steps=4, resume=True,
                env={"ACTSYNC_TEST_DUMP_LOADED": str(loaded_file)})
    assert "resume: step-00000002.ckpt was written by 1 process, this run has 2" in proc.stdout
    loaded = load_file(loaded_file)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved) and sorted(loaded) == sorted(saved)
    shards = _optim_shards(run_dir / "checkpoints" / "step-00000004.ckpt")
    assert len(shards) == 2 and all(float(s["optimizer_state_dict"]["state"][0]["step"]) == 4 for s in shards)
