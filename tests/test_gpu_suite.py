"""bench/gpu_suite.py (issue 13) without a GPU: the --smoke run of every phase on CPU (Triton interpreter),
phases a-c on a simulated bare GPU image (tests/support/bare_gpu_image blocks the packages it lacks), phase d
in a second call into the same directory (as the two GPU calls of the README do), what comes back (bf16
weights with their config, one tar of the rest), failure and timeout handling, and --adopt."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bench import gpu_suite

ROOT = Path(__file__).resolve().parents[1]
BARE = ROOT / "tests" / "support" / "bare_gpu_image"


def _suite(*args, bare=False):
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the suite itself must set it for the smoke run
    if bare:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BARE), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "bench/gpu_suite.py", "--smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_suite")
    out = root / "results"
    _suite("--phases", "a,b,c", "--out", str(out), bare=True)
    _suite("--phases", "d", "--out", str(out), "--work", str(root / "work"), "--tar", str(root / "results.tar.gz"))
    return out, root


def test_every_phase_runs_at_tiny_shapes_and_records_its_environment(smoke):
    out, _ = smoke
    summary = json.loads((out / "suite.json").read_text())
    assert summary["smoke"] is True
    assert {k: v["status"] for k, v in summary["phases"].items()} == {name: "ok" for name in gpu_suite.PHASES.values()}
    # The < 60 s target (issue 13) is measured on an idle machine by running the suite alone (README); under
    # pytest-xdist on 2 cores it took 55-106 s, so this only guards against a hang or a several-fold regression.
    assert summary["wall_s"] < 240, summary["wall_s"]
    for name in gpu_suite.PHASES.values():
        result = json.loads((out / f"{name}.json").read_text())
        assert {"device", "commit", "torch", "triton"} <= set(result.get("environment", result)), name
        assert (out / f"{name}.md").read_text().strip(), name
    assert "3 passed" in (out / "suite.md").read_text()  # phase a ran the interpreter tests, GPU ones skipped
    assert "Smoke run on CPU" in (out / "suite.md").read_text()


def test_phase_d_scores_the_test_clips_and_returns_bf16_weights_with_their_config(smoke):
    out, root = smoke
    record = json.loads((out / "d_synth_train.json").read_text())
    assert [s for s in record["steps"]] == ["data", "throughput", "fit", "generate", "evaluate", "export"]
    assert {"h_at_s", "tc", "sync_c", "csim"} <= set(record["test_metrics"])
    weights = out / gpu_suite.WEIGHTS
    assert weights.stat().st_size < 16 * 2 ** 20
    with safe_open(str(weights), "pt") as f:
        assert "preset: tiny" in f.metadata()["resolved_config_yaml"]
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    assert dtypes == {torch.bfloat16}
    with tarfile.open(root / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"suite.md", "d_synth_train.json", "a_kernel_tests.json", "logs/d_synth_train.log"} <= names
    assert gpu_suite.WEIGHTS not in names  # travels as its own file


def test_synth_config_weights_fit_the_16_mib_a_gpu_slot_returns():
    from omegaconf import OmegaConf

    from configs.loader import load_config
    from models.dit import WanDiT

    model_cfg = OmegaConf.to_object(load_config("synth", [])).model
    dit = model_cfg.dit_config()
    dit.in_channels = dit.out_channels = 16      # the demo codec's 16 latent channels; MiniLM's 384 text width
    dit.text_dim = 384
    with torch.device("meta"):
        model = WanDiT(dit, model_cfg.audio)
    params = sum(p.numel() for p in model.parameters())
    assert 2 * params < 16 * 2 ** 20 and params > 2 * 2.8e6, params  # bf16 bytes; bigger than the demo DiT


def test_a_failing_and_a_hanging_phase_are_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    commands = {"b": [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                "c": [sys.executable, "-c", "import time; time.sleep(30)"]}
    monkeypatch.setattr(gpu_suite, "phase_command", lambda phase, *a: commands[phase])
    monkeypatch.setattr(gpu_suite, "CAPS_S", {"b": 20, "c": 2})
    gpu_suite.main(["--phases", "b,c", "--out", str(tmp_path)])
    phases = json.loads((tmp_path / "suite.json").read_text())["phases"]
    assert phases["b_kernel_bench"]["status"] == "failed" and "boom" in phases["b_kernel_bench"]["log_tail"]
    assert phases["c_dit_5b"]["status"] == "timeout" and phases["c_dit_5b"]["wall_s"] < 10
    assert "| c_dit_5b | timeout |" in (tmp_path / "suite.md").read_text()


def test_pytest_summary_counts():
    assert gpu_suite.pytest_counts("3 passed, 12 skipped, 1 failed, 18 deselected in 3.77s") == {
        "passed": 3, "skipped": 12, "failed": 1, "deselected": 18}


def test_adopt_writes_the_tile_winner_for_the_gpu_family(tmp_path, monkeypatch):
    from kernels import time_attention_triton as impl

    tuned = tmp_path / "tuned_tiles.json"
    tuned.write_text(json.dumps({"sm80": {"d128": {"fwd": [64, 64, 4, 2, None], "bwd": [64, 32, 4, 2, None]}}}))
    monkeypatch.setattr(impl, "TUNED_TILES_FILE", tuned)
    results = tmp_path / "nvidia-h200"
    results.mkdir()
    winner = {"fwd": [128, 64, 8, 3, None], "bwd": [64, 64, 8, 2, 2], "head_dim": 128}
    (results / "b_kernel_bench.json").write_text(json.dumps({"device": "NVIDIA H200",
                                                             "tile_search": {"winner": winner}}))
    (results / "suite.json").write_text(json.dumps({"environment": {"capability": "sm90"}}))
    gpu_suite.main(["--adopt", str(results)])
    table = json.loads(tuned.read_text())
    assert table["sm90"]["d128"]["fwd"] == winner["fwd"] and table["sm90"]["d128"]["bwd"] == winner["bwd"]
    assert table["sm80"]["d128"]["fwd"] == [64, 64, 4, 2, None]  # other families kept
    (results / "suite.json").write_text(json.dumps({"environment": {"capability": None}}))
    with pytest.raises(SystemExit, match="smoke run cannot be adopted"):
        gpu_suite.main(["--adopt", str(results)])
