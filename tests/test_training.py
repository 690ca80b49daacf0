"""Exactness of the training stack (issue 4, deliverable 6), on CPU and deterministic.

* kill -9 mid-training + `--resume auto`, and SIGTERM (preemption) + resume, end bit-identical (weights,
  EMA shadow, optimizer and LR-scheduler state) to an uninterrupted run of the same length; so does a
  run without validation passes (validation must not touch the training randomness);
* a SIGTERM that arrives during a validation pass still gives a step checkpoint and a clean stop;
* a truncated newest checkpoint or a leftover `.partial` is skipped with a warning;
* ActAvatar stage 1 (train.trainable = audio adapter + audio attention) leaves every other parameter
  bit-identical, and its weights.safetensors initialises a stage-2 model with phase embeddings;
* unit tests: StepSampler, EMA, lr_lambda, trainable_names.

Cost: the subprocess runs (about 10 s each, mostly imports) are shared through the module-scoped
`full_and_killed` and `preempted_and_noval` fixtures, two at a time; each pins OMP_NUM_THREADS=1 so every run computes with
the same kernels (results depend on the thread count).
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

import main as cli
from common.errors import CheckpointError
from configs.loader import ConfigError, load_config
from datamodules.samplers import StepSampler
from lightning_modules import fit as fit_module
from lightning_modules.checkpoints import find_resume_checkpoint, step_checkpoint_path
from lightning_modules.ema import EMA
from lightning_modules.flow_module import lr_lambda, trainable_names
from models.convert import NEW_MODULE_PATTERN
from system.build import build_system
from system.weights import load_stage_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
STEPS, CKPT_EVERY, VAL_EVERY = 16, 4, 3
STAGE1_PATTERNS = ["audio_adapter", "audio_attn"]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
                    "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- helpers


def fit_overrides(ws: Path, name: str, **extra) -> list[str]:
    values = {"run.output_dir": ws / "runs", "run.name": name, "data.root": ws / "data",
              "model.codec.cache_dir": ws / "codec", "model.preset": "tiny", "data.batch_size": 2,
              "data.duration": 1.2, "train.logger.kind": "csv", "train.max_steps": STEPS,
              "train.ckpt_every": CKPT_EVERY, "train.val_every": VAL_EVERY, "train.warmup_steps": 3}
    values |= {k.replace("__", "."): v for k, v in extra.items()}
    return [f"{k}={v}" for k, v in values.items()]


def run_dir(ws: Path, name: str) -> Path:
    return ws / "runs" / name / "fit"


def ckpt_steps(directory: Path) -> list[int]:
    return sorted(int(p.name[5:13]) for p in directory.glob("step-*.ckpt"))


def start_fit(ws: Path, name: str, log_name: str, resume: bool = False, **extra) -> tuple[subprocess.Popen, Path]:
    log = ws / f"{log_name}.log"
    command = [sys.executable, "main.py", "fit", "-e", "smoke", *fit_overrides(ws, name, **extra), "--quiet"]
    if resume:
        command += ["--resume", "auto"]
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=handle, stderr=subprocess.STDOUT)
    return proc, log


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> dict:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return {"rc": proc.returncode, "output": log.read_text()}


def run_fit(ws: Path, name: str, log_name: str, resume: bool = False, **extra) -> dict:
    result = finish(*start_fit(ws, name, log_name, resume, **extra))
    assert result["rc"] == 0, f"{log_name} failed (rc {result['rc']}):\n{result['output'][-4000:]}"
    return result


def interrupt_fit(ws: Path, name: str, sig: int, after_step: int) -> dict:
    """Start a fit, wait for its step-`after_step` checkpoint, send `sig`; return rc, output, seconds to exit."""
    proc, log = start_fit(ws, name, f"{name}-interrupted")
    target = step_checkpoint_path(run_dir(ws, name) / "checkpoints", after_step)
    deadline = time.monotonic() + 240
    while not target.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{name}: no {target.name} before exit/timeout:\n{log.read_text()[-4000:]}")
        time.sleep(0.01)
    proc.send_signal(sig)
    sent = time.monotonic()
    result = finish(proc, log, timeout=120)
    return result | {"seconds_to_exit": time.monotonic() - sent}


def assert_same(a, b, where: str) -> None:
    """Recursive exact equality of checkpoint contents (tensors with torch.equal)."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max abs diff {(a.double() - b.double()).abs().max().item():.3g}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))[:5]}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(reference: Path, other: Path) -> None:
    """Final checkpoints and exported weights of two runs are bit-identical."""
    ckpt_a = torch.load(reference / "checkpoints" / f"step-{STEPS:08d}.ckpt", map_location="cpu", weights_only=False)
    ckpt_b = torch.load(other / "checkpoints" / f"step-{STEPS:08d}.ckpt", map_location="cpu", weights_only=False)
    assert ckpt_a["global_step"] == ckpt_b["global_step"] == STEPS
    differing = [k for k in ckpt_a["state_dict"] if not torch.equal(ckpt_a["state_dict"][k], ckpt_b["state_dict"][k])]
    assert set(ckpt_a["state_dict"]) == set(ckpt_b["state_dict"])
    assert not differing, f"{len(differing)} of {len(ckpt_a['state_dict'])} weights differ, e.g. {differing[:4]}"
    assert_same(ckpt_a["ema"], ckpt_b["ema"], "ema")
    assert_same(ckpt_a["optimizer_states"], ckpt_b["optimizer_states"], "optimizer_states")
    assert_same(ckpt_a["lr_schedulers"], ckpt_b["lr_schedulers"], "lr_schedulers")
    assert_same(load_file(reference / "weights.safetensors"), load_file(other / "weights.safetensors"), "weights")


# --------------------------------------------------------------------------- shared expensive runs


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Workspace with the smoke SynthAvatar splits and the fitted codec (generated once, in-process)."""
    root = tmp_path_factory.mktemp("training")
    cfg = load_config("smoke", fit_overrides(root, "setup"))
    build_system(cfg, progress=False, load_init=False)  # generates the splits and fits the codec
    return root


def in_two_lanes(*lanes) -> dict:
    """Run each lane (a function running dependent subprocesses in order) in its own thread; merge results."""
    with ThreadPoolExecutor(len(lanes)) as pool:
        futures = [pool.submit(lane) for lane in lanes]
        merged = {}
        for future in futures:
            merged |= future.result()
        return merged


@pytest.fixture(scope="module")
def full_and_killed(ws) -> dict:
    """The uninterrupted reference run, alongside a run killed with SIGKILL after its first checkpoint and
    resumed with `--resume auto`."""

    def killed_then_resumed():
        out = {"killed": interrupt_fit(ws, "killed", signal.SIGKILL, after_step=CKPT_EVERY)}
        out["killed_steps"] = ckpt_steps(run_dir(ws, "killed") / "checkpoints")
        return out | {"killed_resume": run_fit(ws, "killed", "killed-resume", resume=True)}

    return in_two_lanes(lambda: {"full": run_fit(ws, "full", "full")}, killed_then_resumed)


@pytest.fixture(scope="module")
def preempted_and_noval(ws) -> dict:
    """A run sent SIGTERM after its first checkpoint and resumed, alongside a run without validation passes."""

    def preempted_then_resumed():
        out = {"preempted": interrupt_fit(ws, "preempted", signal.SIGTERM, after_step=CKPT_EVERY)}
        out["preempted_steps"] = ckpt_steps(run_dir(ws, "preempted") / "checkpoints")
        return out | {"preempted_resume": run_fit(ws, "preempted", "preempted-resume", resume=True)}

    return in_two_lanes(preempted_then_resumed, lambda: {"noval": run_fit(ws, "noval", "noval", train__val_every=0)})


# --------------------------------------------------------------------------- 1. kill -9 and resume


def test_kill_resume_is_bit_identical(ws, full_and_killed):
    fit_runs = full_and_killed
    killed = fit_runs["killed"]
    assert killed["rc"] == -signal.SIGKILL, f"the run was not killed mid-training (rc {killed['rc']})"
    assert CKPT_EVERY in fit_runs["killed_steps"] and max(fit_runs["killed_steps"]) < STEPS
    resumed = fit_runs["killed_resume"]["output"]
    assert f"step-{CKPT_EVERY:08d}.ckpt" in resumed, "the resumed run did not restore the step checkpoint"
    assert_same_training_state(run_dir(ws, "full"), run_dir(ws, "killed"))


def test_checkpoint_holds_ema_of_its_own_step(ws, full_and_killed):
    """The EMA in a step checkpoint includes that step's update (it was one behind: lost on resume)."""
    for step in ckpt_steps(run_dir(ws, "full") / "checkpoints"):
        ckpt = torch.load(step_checkpoint_path(run_dir(ws, "full") / "checkpoints", step), map_location="cpu",
                          weights_only=False)
        assert ckpt["ema"]["updates"] == ckpt["global_step"] == step


# --------------------------------------------------------------------------- 2. preemption (SIGTERM)


def test_sigterm_writes_checkpoint_and_exits_cleanly(ws, preempted_and_noval):
    fit_runs = preempted_and_noval
    run = fit_runs["preempted"]
    assert run["rc"] == 0, f"SIGTERM: exit status {run['rc']}:\n{run['output'][-3000:]}"
    match = re.search(r"preemption signal: checkpoint at step (\d+) written, stopping", run["output"])
    assert match, run["output"][-3000:]
    step = int(match.group(1))
    assert CKPT_EVERY < step < STEPS
    assert max(fit_runs["preempted_steps"]) == step, fit_runs["preempted_steps"]
    assert run["seconds_to_exit"] < 30
    assert not list((run_dir(ws, "preempted") / "checkpoints").glob("*.partial"))


def test_sigterm_resume_is_bit_identical(ws, full_and_killed, preempted_and_noval):
    step = max(preempted_and_noval["preempted_steps"])
    assert f"step-{step:08d}.ckpt" in preempted_and_noval["preempted_resume"]["output"]
    assert_same_training_state(run_dir(ws, "full"), run_dir(ws, "preempted"))


def test_validation_does_not_change_training(ws, full_and_killed, preempted_and_noval):
    """val_every=3 (five validation passes) and val_every=0 end with identical weights and states."""
    passes = {}
    for name in ("full", "noval"):
        with open(run_dir(ws, name) / "logs" / "metrics.csv") as handle:
            passes[name] = sum(1 for row in csv.DictReader(handle) if row.get("val/loss"))
    assert passes == {"full": STEPS // VAL_EVERY, "noval": 1}  # val_every=0: one pass at the end
    assert_same_training_state(run_dir(ws, "full"), run_dir(ws, "noval"))


@pytest.fixture
def extra_callbacks(monkeypatch):
    """Extra Lightning callbacks for an in-process `main.py fit` (appended to the real ones)."""
    extra: list = []
    real = fit_module.build_trainer
    monkeypatch.setattr(fit_module, "build_trainer",
                        lambda cfg, run_dir, callbacks, progress=True: real(cfg, run_dir, callbacks + extra, progress))
    return extra


class SignalDuringValidation(L.Callback):
    def __init__(self, sig):
        self.sig, self.sent_at = sig, None

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.sent_at is None and trainer.global_step == 2:
            self.sent_at = trainer.global_step
            os.kill(os.getpid(), self.sig)


def test_sigterm_during_validation_checkpoints_next_step(ws, extra_callbacks):
    """A SIGTERM that lands in a validation pass (after step 2) stops after step 3 with its checkpoint;
    Lightning's own SIGTERM handling used to end the run right after validation, without a checkpoint."""
    name, sig = "val-sigterm", signal.SIGTERM
    sender = SignalDuringValidation(sig)
    extra_callbacks.append(sender)
    before = signal.getsignal(sig)
    status = cli.main(["fit", "-e", "smoke", *fit_overrides(ws, name, train__val_every=2, train__ckpt_every=5,
                                                             train__max_steps=8), "--quiet"])
    assert status == 0 and sender.sent_at == 2
    assert ckpt_steps(run_dir(ws, name) / "checkpoints") == [3]
    assert not (run_dir(ws, name) / "weights.safetensors").exists()  # stopped early: not a finished stage
    assert signal.getsignal(sig) == before  # handlers restored after the fit


# --------------------------------------------------------------------------- 3. corrupt / partial checkpoints


def _fake_checkpoint(path: Path, step: int) -> None:
    torch.save({"state_dict": {"model.w": torch.full((3,), float(step))}, "global_step": step,
                "optimizer_states": [{}]}, path)


def test_resume_skips_truncated_and_partial_checkpoints(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    for step in (4, 8, 12):
        _fake_checkpoint(step_checkpoint_path(directory, step), step)
    newest = step_checkpoint_path(directory, 12)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated (crash while copying)
    partial = directory / "step-00000016.ckpt.partial"  # a save interrupted before its rename
    _fake_checkpoint(partial, 16)
    empty = step_checkpoint_path(directory, 14)
    empty.write_bytes(b"")

    with pytest.warns(UserWarning) as caught:
        found = find_resume_checkpoint(directory)
    assert found == step_checkpoint_path(directory, 8)
    messages = "\n".join(str(w.message) for w in caught)
    assert str(newest) in messages and str(empty) in messages and "corrupt" in messages
    assert str(partial) in messages  # the leftover .partial is reported too, never used

    with pytest.warns(UserWarning, match="skipping checkpoint"):  # the CLI path (`--resume auto`)
        assert fit_module.resume_path("auto", directory) == str(step_checkpoint_path(directory, 8))
    for path in directory.iterdir():
        path.unlink()
    with pytest.warns(UserWarning, match="starting fresh"):
        assert fit_module.resume_path("auto", directory) is None
    assert fit_module.resume_path("", directory) is None
    with pytest.raises(ConfigError, match="no such checkpoint"):
        fit_module.resume_path(str(directory / "missing.ckpt"), directory)


def test_truncated_real_checkpoint_falls_back(ws, full_and_killed, tmp_path):
    """A real Lightning checkpoint cut short is skipped; the older complete one is chosen."""
    source = run_dir(ws, "full") / "checkpoints"
    steps = ckpt_steps(source)
    assert len(steps) >= 2
    for step in steps[-2:]:
        (tmp_path / f"step-{step:08d}.ckpt").write_bytes(step_checkpoint_path(source, step).read_bytes())
    newest = tmp_path / f"step-{steps[-1]:08d}.ckpt"
    newest.write_bytes(newest.read_bytes()[:-4096])
    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        assert find_resume_checkpoint(tmp_path) == tmp_path / f"step-{steps[-2]:08d}.ckpt"


# --------------------------------------------------------------------------- 4./5. stage 1 and stage 2


def stage1_overrides(ws: Path, name: str = "stage1", **extra) -> list[str]:
    return fit_overrides(ws, name, train__trainable="[" + ",".join(STAGE1_PATTERNS) + "]", train__stage="stage1",
                         model__dit__phase_embedding="false", train__max_steps=6, train__val_every=0,
                         train__ckpt_every=6, **extra)


@pytest.fixture(scope="module")
def stage1(ws) -> dict:
    """An in-process ActAvatar stage-1 style run from a "pretrained" backbone, and the weights it started from.

    The backbone stands in for syncdreamer_stage1 / Wan2.2 (configs/experiment/actavatar_stage1.yaml): the DiT
    without its audio modules, with a non-zero output head. From scratch, Wan's zero-initialised head is frozen
    at zero and no gradient reaches the audio adapter: stage 1 would train nothing (exactly zero updates)."""
    prior_dir = ws / "runs" / "prior" / "fit"
    overrides = stage1_overrides(ws, train__init_from=prior_dir)
    initial = build_system(load_config("smoke", overrides), progress=False, load_init=False)
    prior = {k: v.clone() for k, v in initial.model.state_dict().items() if not NEW_MODULE_PATTERN.fullmatch(k)}
    assert not any("audio" in k for k in prior)
    head = prior["head.head.weight"]
    prior["head.head.weight"] = 0.02 * torch.randn(head.shape, generator=torch.Generator().manual_seed(1))
    save_weights(prior, prior_dir, {"stage": "prior (test stand-in)"})
    load_stage_weights(initial.model, prior_dir)  # what build_system does in the run (same seed, same init)
    before = {k: v.clone() for k, v in initial.model.state_dict().items()}
    assert cli.main(["fit", "-e", "smoke", *overrides, "--quiet"]) == 0
    directory = run_dir(ws, "stage1")
    ckpt = torch.load(directory / "checkpoints" / "step-00000006.ckpt", map_location="cpu", weights_only=False)
    return {"before": before, "model": initial.model, "dir": directory, "ckpt": ckpt,
            "weights": load_file(directory / "weights.safetensors")}


def test_stage1_trains_only_the_audio_adapter(stage1):
    before, ckpt = stage1["before"], stage1["ckpt"]
    after = {k[len("model."):]: v for k, v in ckpt["state_dict"].items()}
    assert set(after) == set(before)
    trained = trainable_names(stage1["model"], STAGE1_PATTERNS)
    expected = [n for n, _ in stage1["model"].named_parameters()
                if n.startswith("audio_adapter.") or ".audio_attn." in n]
    assert trained == expected and ckpt["trained_parameters"] == trained
    assert any(n.startswith("audio_adapter.dynamics.") for n in trained)  # the dynamics encoder trains too
    frozen = [n for n in after if n not in trained]
    assert len(frozen) > len(trained)
    changed_frozen = [n for n in frozen if not torch.equal(before[n], after[n])]
    assert not changed_frozen, f"frozen parameters changed: {changed_frozen[:5]}"
    unchanged = [n for n in trained if torch.equal(before[n], after[n])]
    assert not unchanged, f"trained parameters did not change: {unchanged}"
    # the optimizer holds exactly the trained tensors, in order
    (optimizer,) = ckpt["optimizer_states"]
    (group,) = optimizer["param_groups"]
    assert len(group["params"]) == len(trained)
    shapes = [optimizer["state"][i]["exp_avg"].shape for i in group["params"]]
    assert shapes == [before[n].shape for n in trained]
    assert sorted(ckpt["ema"]["shadow"]) == sorted(trained)
    # the exported weights (EMA for the trained ones) keep the frozen backbone as it was
    assert all(torch.equal(stage1["weights"][n], before[n]) for n in frozen)
    assert all(torch.equal(stage1["weights"][n], ckpt["ema"]["shadow"][n]) for n in trained)


def test_stage2_initialises_from_stage1(ws, stage1):
    overrides = fit_overrides(ws, "stage2", train__init_from=stage1["dir"], model__dit__phase_embedding="true")
    system = build_system(load_config("smoke", overrides), progress=False)
    state = system.model.state_dict()
    weights = stage1["weights"]
    assert set(state) - set(weights) == {"phase_embedding.weight"} and set(weights) <= set(state)
    differing = [k for k in weights if not torch.equal(state[k], weights[k])]
    assert not differing, differing[:5]
    assert torch.count_nonzero(state["phase_embedding.weight"]) == 0

    # incompatible models: a different width (shape mismatch) and one without the audio adapter
    typed = system.cfg
    from models.conditioning import build_model
    for change in ({"ffn_dim": 96}, {"audio": False}):
        model_cfg = typed.model
        if "ffn_dim" in change:
            model_cfg.dit.ffn_dim = change["ffn_dim"]
        else:
            model_cfg.dit.ffn_dim = None
            model_cfg.audio.enabled = False
        model = build_model(model_cfg, system.encoder.codec, system.encoder.text_encoder.dim)
        with pytest.raises(CheckpointError, match=re.escape(str(stage1["dir"] / "weights.safetensors"))):
            load_stage_weights(model, stage1["dir"])


def test_init_from_another_latent_space_is_refused(ws, stage1):
    """Same shapes, other codec fit (fewer fit clips): the weights would load and produce noise; the codec
    key recorded at fit (weights.json) refuses them before any weight is loaded."""
    recorded = json.loads((stage1["dir"] / "weights.json").read_text())["codec_key"]
    same = build_system(load_config("smoke", fit_overrides(ws, "stage2", train__init_from=stage1["dir"])),
                        progress=False)
    assert recorded and same.encoder.codec.key == recorded
    other = fit_overrides(ws, "stage2", train__init_from=stage1["dir"], model__codec__fit_clips=4)
    with pytest.raises(CheckpointError, match=f"trained on codec '{recorded}'.*fit_clips"):
        build_system(load_config("smoke", other), progress=False)
    # a shipped base (`make pretrain`: bf16 export of the run's checkpoint) keeps the key
    from lightning_modules.export import export_weights
    shipped = export_weights(stage1["dir"], ws / "base" / "weights.safetensors", dtype="bf16")
    assert json.loads(shipped.with_suffix(".json").read_text())["codec_key"] == recorded
    with pytest.raises(CheckpointError, match="trained on codec"):
        build_system(load_config("smoke", fit_overrides(ws, "stage2", train__init_from=shipped.parent,
                                                        model__codec__fit_clips=4)), progress=False)


def test_init_from_unfinished_stage_is_an_error(ws, tmp_path):
    with pytest.raises(CheckpointError, match="did that stage finish"):
        load_stage_weights(torch.nn.Linear(2, 2), tmp_path)


def test_text_states_do_not_depend_on_batch_history():
    # A resumed run starts with an empty text cache: the states of a text must not depend on which texts
    # shared its first forward pass, or the resumed run drifts from the uninterrupted one.
    from models.text_encoders import MiniLMTextEncoder
    short = "A person with short hair waves hello."
    long = "Base: a person in a striped shirt. Phase-1 [0.0s-1.0s]: raises the left hand slowly above the head."
    alone = MiniLMTextEncoder(cache_size=16).encode([short]).hidden[0]
    first_met_with_long = MiniLMTextEncoder(cache_size=16).encode([short, long]).hidden[0, :len(alone)]
    assert torch.equal(alone, first_met_with_long)


# --------------------------------------------------------------------------- 6. small units


def test_step_sampler_resume_yields_the_tail():
    n, batch, total = 7, 3, 11  # epochs do not align with batches
    full = list(StepSampler(n, batch, total, seed=5))
    assert len(full) == total * batch == len(StepSampler(n, batch, total, seed=5))
    for k in (1, 4, 7, 10, 11):
        step = {"value": 0}
        sampler = StepSampler(n, batch, total, seed=5, start_step=lambda step=step: step["value"])
        step["value"] = k  # read when iteration starts (after Lightning restored global_step)
        assert len(sampler) == (total - k) * batch
        assert list(sampler) == full[k * batch:]
    for e in range(len(full) // n):  # each complete epoch is a permutation, and epochs differ
        assert sorted(full[e * n:(e + 1) * n]) == list(range(n))
    assert full[:n] != full[n:2 * n]
    assert full != list(StepSampler(n, batch, total, seed=6))


def test_step_sampler_ranks_are_disjoint_and_cover_each_epoch():
    n, batch, total, world = 10, 2, 9, 3
    streams = [list(StepSampler(n, batch, total, seed=1, rank=r, world=world)) for r in range(world)]
    interleaved = [streams[r][p] for p in range(total * batch) for r in range(world)]
    for e in range(len(interleaved) // n):
        epoch = interleaved[e * n:(e + 1) * n]
        assert sorted(epoch) == list(range(n)), f"epoch {e} not covered exactly once across ranks"
    # the ranks' step-s batches are disjoint within an epoch: whole steps are consecutive in the stream
    for s in range(total):
        items = [i for r in range(world) for i in streams[r][s * batch:(s + 1) * batch]]
        if (s * batch * world) // n == ((s + 1) * batch * world - 1) // n:
            assert len(set(items)) == len(items)
    # a resumed rank continues its own stream
    resumed = StepSampler(n, batch, total, seed=1, rank=2, world=world, start_step=lambda: 5)
    assert list(resumed) == streams[2][5 * batch:]


def test_step_sampler_rejects_empty_dataset():
    with pytest.raises(ValueError):
        StepSampler(0, 2, 10)


def test_ema_warmup_formula_and_state_round_trip():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    ema = EMA([("w", p)], decay=0.9)
    expected = p.detach().clone()
    for k in range(20):
        with torch.no_grad():
            p.add_(torch.randn(5))
        ema.update()
        decay = min(0.9, (1 + k) / (10 + k))
        expected = decay * expected + (1 - decay) * p.detach()
        torch.testing.assert_close(ema.shadow["w"], expected, rtol=0, atol=1e-6)
    assert ema.updates == 20
    state = ema.state_dict()
    clone = EMA([("w", p)], decay=0.9)  # e.g. the module rebuilt on resume, then the checkpoint loaded
    clone.load_state_dict(state)
    assert clone.updates == 20 and torch.equal(clone.shadow["w"], ema.shadow["w"])
    with torch.no_grad():
        p.add_(1.0)
    ema.update(), clone.update()
    assert torch.equal(clone.shadow["w"], ema.shadow["w"])
    with pytest.raises(KeyError):
        EMA([("other", p)], 0.9).load_state_dict(state)
    model = torch.nn.Linear(2, 1)
    averaged = EMA([("weight", model.weight)], 0.9).averaged_state(model)
    assert set(averaged) == {"weight", "bias"}


def test_ema_of_low_precision_weights_is_kept_in_fp32():
    """bf16-true training converts the parameters in place; the shadow stays fp32 and exports in bf16."""
    model = torch.nn.Linear(4, 4)
    ema = EMA(list(model.named_parameters()), decay=0.999)
    model.to(torch.bfloat16)
    ema.update()
    assert all(t.dtype == torch.float32 for t in ema.shadow.values())
    state = ema.averaged_state(model)
    assert all(v.dtype == torch.bfloat16 for v in state.values())


def test_lr_lambda_warmup_then_cosine_to_ten_percent():
    f = lr_lambda(warmup=4, total=24, schedule="cosine")
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(14) == pytest.approx(0.55)  # half-way through the cosine
    assert f(24) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    values = [f(s) for s in range(4, 25)]
    assert all(a > b for a, b in zip(values, values[1:]))
    constant = lr_lambda(warmup=2, total=10, schedule="constant")
    assert [constant(s) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]
    # as used: LambdaLR, one scheduler step per optimizer step (the step-k update uses f(k))
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, f)
    seen = []
    for _ in range(24):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step(), scheduler.step()
    assert seen == pytest.approx([f(s) for s in range(24)])


def test_trainable_names_order_and_unmatched_pattern():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert trainable_names(model, [r"1\.weight", r"^0\.", r"0\.bias"]) == ["0.weight", "0.bias", "1.weight"]
    with pytest.raises(ConfigError, match=r"train.trainable pattern 'audio_adaptor' matches no parameter"):
        trainable_names(model, [r"0\.", "audio_adaptor"])


def test_unmatched_trainable_pattern_is_a_config_error_on_the_command_line(ws, capsys):
    status = cli.main(["fit", "-e", "smoke", *fit_overrides(ws, "bad-pattern", train__trainable="[audio_adaptor]")])
    assert status == 2
    assert "audio_adaptor" in capsys.readouterr().err
