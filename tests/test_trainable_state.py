"""Every trainable module is owned end to end (issue 14): the learned-text-encoder ablation trains its table,
EMA averages it like the DiT, the fit export and `main.py export` write it beside the DiT weights with the
run's config.json, and `generate --weights DIR` rebuilds the whole model from that directory alone."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.safe_load import load_checkpoint_file
from system.weights import read_text_encoder

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
STEPS = 6


def _main(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("learned_text")
    result = _main("fit", "-e", "smoke", "--quiet", f"run.output_dir={ws / 'runs'}", "run.name=learned",
                   f"data.root={ws / 'data'}", f"model.codec.cache_dir={ws / 'codec'}", "model.text.encoder=learned",
                   "data.batch_size=2", "data.duration=1.2", "train.logger.kind=csv", f"train.max_steps={STEPS}",
                   f"train.ckpt_every={STEPS}", "train.val_every=0", "train.warmup_steps=1", "train.ema_decay=0.5",
                   "train.lr=0.01")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    fit = ws / "runs" / "learned" / "fit"
    return ws, fit, load_checkpoint_file(next((fit / "checkpoints").glob(f"step-*{STEPS}.ckpt")))


def test_learned_text_encoder_is_trained_averaged_and_exported_with_the_config(learned_run):
    ws, fit, ckpt = learned_run
    raw = {k[len("text_encoder."):]: v for k, v in ckpt["state_dict"].items()
           if k.startswith("text_encoder.") and torch.is_tensor(v)}
    assert raw, "the trained text table is in the checkpoint"
    shadow = ckpt["text_ema"]["shadow"]
    assert set(shadow) == set(raw) and ckpt["text_ema"]["updates"] == STEPS
    exported = load_file(fit / "text_encoder.safetensors")
    assert set(exported) == set(raw)
    vocab = ckpt["state_dict"]["text_encoder._extra_state"]["vocab"]  # travels in the file's metadata
    assert read_text_encoder(fit)["_extra_state"]["vocab"] == vocab
    assert all(torch.equal(exported[k], shadow[k]) for k in raw)  # the EMA average, as for the DiT
    assert any(not torch.equal(shadow[k], raw[k]) for k in raw)  # ... which is not the raw table
    config = json.loads((fit / "config.json").read_text())
    assert config["model"]["text"]["encoder"] == "learned" and config["run"]["name"] == "learned"
    # `main.py export` from the checkpoint: the same table beside its output, raw with --no-ema
    for flag, expected in (([], shadow), (["--no-ema"], raw)):
        out = ws / ("export_raw" if flag else "export_ema") / "weights.safetensors"
        result = _main("export", "--checkpoint", str(fit), "--out", str(out), *flag)
        assert result.returncode == 0, result.stderr[-3000:]
        table = load_file(out.parent / "text_encoder.safetensors")
        assert all(torch.equal(table[k], expected[k]) for k in raw), flag
        assert json.loads((out.parent / "config.json").read_text())["model"] == config["model"]


def test_generate_from_a_weights_directory_needs_no_experiment(learned_run, tmp_path):
    _, fit, _ = learned_run
    weights = tmp_path / "shared"  # what someone hands over: the export directory alone
    weights.mkdir()
    for name in ("weights.safetensors", "text_encoder.safetensors", "config.json", "weights.json"):
        (weights / name).write_bytes((fit / name).read_bytes())
    result = _main("generate", "--weights", str(weights), "--split", "test", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list((tmp_path / "out").glob("clip_*.mp4"))) == 2  # scale/tiny: data.num_test = 2
    (weights / "text_encoder.safetensors").unlink()  # the DiT alone cannot run: its text table is missing
    result = _main("generate", "--weights", str(weights), "--split", "test", "--out", str(tmp_path / "out2"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no text_encoder.safetensors was exported with these weights" in result.stderr
