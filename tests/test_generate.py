"""`main.py generate`: single request, JSONL batch and split mode write mp4s with audio; bad requests and
missing weights fail with one line (exit 2); the Fig. 4 attention-mass computation and its plot."""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import main
from common.video_io import read_video
from configs.loader import load_config
from inference.attention_map import clip_record, frame_phase_mass, phase_window_summary, summarize_records
from inference.requests import load_reference, load_request_audio
from synthavatar.dataset import ensure_split, load_clip

FPS, SR, RES = 25, 16000, 64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Smoke config (1.2 s clips, tiny DiT, 2 sampling steps), random weights in runs/smoke/fit, and the
    request files (reference png, wav, prompt json) of the two test clips."""
    from system.build import build_system
    from system.weights import save_weights

    root = tmp_path_factory.mktemp("generate")
    overrides = [f"run.output_dir={root / 'runs'}", f"data.root={root / 'data'}",
                 f"model.codec.cache_dir={root / 'codec'}", "data.duration=1.2", "data.gen_workers=1",
                 "model.preset=tiny", "sample.steps=2"]
    cfg = load_config("smoke", overrides)
    system = build_system(cfg, progress=False)
    save_weights(system.model.state_dict(), root / "runs" / "smoke" / "fit", {"run": "smoke"})
    inputs = root / "inputs"
    inputs.mkdir()
    clips = [load_clip(p) for p in ensure_split(cfg.data, "test", progress=False)]
    for i, clip in enumerate(clips):
        Image.fromarray(clip["video"][0]).save(inputs / f"ref{i}.png")
        sf.write(inputs / f"speech{i}.wav", clip["audio"], SR, subtype="FLOAT")
        (inputs / f"prompt{i}.json").write_text(json.dumps(clip["prompt"]))
    return {"root": root, "overrides": overrides, "inputs": inputs, "clips": clips}


def generate(world, *args):
    return main.main(["generate", "-e", "smoke", *args, *world["overrides"]])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255 ** 2 / max(mse, 1e-12))


def check_video(path, num_frames, audio, size=(RES, RES)):
    """mp4 reads back with the right frames, size, fps and the given audio (AAC round trip)."""
    clip = read_video(path, sample_rate=SR)
    assert clip.frames.shape == (num_frames, *size, 3) and clip.fps == FPS
    assert clip.audio is not None and abs(len(clip.audio) - num_frames * SR / FPS) <= SR / FPS / 2
    n = min(len(clip.audio), len(audio))
    assert np.corrcoef(clip.audio[:n], audio[:n])[0, 1] > 0.95  # the request's audio, not silence
    return clip


# ------------------------------------------------------------------------------------------ end to end


def test_single_request_writes_mp4_with_audio_attention_json_and_plot(world, capsys):
    inputs, out = world["inputs"], world["root"] / "single"
    assert generate(world, "--reference", str(inputs / "ref0.png"), "--audio", str(inputs / "speech0.wav"),
                    "--prompt", str(inputs / "prompt0.json"), "--out", str(out)) == 0
    clip0, clip1 = world["clips"]
    video = check_video(out / "speech0.mp4", 30, clip0["audio"])
    # latent frame 0 is the encoded reference: the first frame reproduces it (codec + H.264 loss only)
    assert psnr(video.frames[0], clip0["video"][0]) > 22 > psnr(video.frames[0], clip1["video"][0])
    record = json.loads((out / "speech0_phase_attention.json").read_text())
    mass = np.array([b["mass"] for b in record["blocks"]])  # (K + 1, F): blocks of a frame sum to 1
    assert mass.shape == (1 + len(clip0["prompt"]["phases"]), 8) and np.allclose(mass.sum(0), 1, atol=1e-5)
    assert "padding_mass" not in record and record["layers"] == [0, 1]
    assert np.allclose(record["frame_seconds"], (np.array([0, 2.5, 6.5, 10.5, 14.5, 18.5, 22.5, 26.5]) + .5) / FPS)
    assert Image.open(out / "speech0_phase_attention.png").size == (800, 420)
    assert "wrote 1 video to" in capsys.readouterr().out


def test_jsonl_batch_resolves_relative_paths_inline_prompt_and_other_lengths(world):
    inputs, out = world["inputs"], world["root"] / "batch"
    clip1 = world["clips"][1]
    short = clip1["audio"][: int(0.8 * SR)]  # 0.8 s -> 20 frames; the inline prompt must fit it
    sf.write(inputs / "short1.flac", short, SR)
    inline = dict(clip1["prompt"], duration=None, phases=[{"start": 0.1, "end": 0.7, "text": "waves hello"}])
    inline.pop("duration")
    lines = [json.dumps({"reference": "ref0.png", "audio": "speech0.wav", "prompt": "prompt0.json",
                         "name": "first"}),
             "",
             json.dumps({"reference": str(inputs / "ref1.png"), "audio": "short1.flac", "prompt": inline})]
    (inputs / "batch.jsonl").write_text("\n".join(lines) + "\n")
    assert generate(world, "--requests", str(inputs / "batch.jsonl"), "--out", str(out),
                    "sample.attention_plot=false") == 0
    check_video(out / "first.mp4", 30, world["clips"][0]["audio"])
    check_video(out / "line0003.mp4", 20, short)  # default name: the line number
    assert sorted(p.name for p in out.iterdir()) == ["first.mp4", "line0003.mp4", "results.jsonl"]


def test_a_batch_keeps_going_past_a_failed_request_and_a_rerun_skips_written_ones(world, monkeypatch, capsys):
    """Issue 17, Deliver 4: a request failing at generation time (here: a planted out-of-memory) is recorded
    with its reason while its batch-mates are written; the rerun generates only what is missing."""
    from inference.outputs import ClipWriter

    inputs, out = world["inputs"], world["root"] / "robust"
    lines = [json.dumps({"reference": "ref0.png", "audio": "speech0.wav", "prompt": "prompt0.json", "name": n})
             for n in ("a", "bad", "c")]
    (inputs / "robust.jsonl").write_text("\n".join(lines) + "\n")
    original = ClipWriter.write_batch

    def flaky(self, names, *args, **kwargs):
        if "bad" in names:
            raise RuntimeError("CUDA out of memory (planted)")
        return original(self, names, *args, **kwargs)

    monkeypatch.setattr(ClipWriter, "write_batch", flaky)
    assert generate(world, "--requests", str(inputs / "robust.jsonl"), "--out", str(out), "sample.batch_size=3",
                    "sample.attention_plot=false") == 1
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in results] == [("a", "written"), ("bad", "failed"), ("c", "written")]
    assert "RuntimeError: CUDA out of memory (planted)" in results[1]["reason"] and results[1]["source"].endswith("line 2")
    printed = capsys.readouterr().out
    assert "1 request(s) failed" in printed and "warning" not in printed  # trained-length audio: no warning
    first = (out / "a.mp4").stat().st_mtime_ns
    monkeypatch.setattr(ClipWriter, "write_batch", original)
    assert generate(world, "--requests", str(inputs / "robust.jsonl"), "--out", str(out),
                    "sample.attention_plot=false") == 0
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["skipped", "written", "skipped"]
    assert (out / "a.mp4").stat().st_mtime_ns == first and (out / "bad.mp4").is_file()


def test_split_mode_side_by_side_is_generated_beside_ground_truth(world):
    out = world["root"] / "split"
    assert generate(world, "--split", "test", "--out", str(out), "sample.num_clips=1",
                    "sample.side_by_side=true", "sample.attention_plot=false") == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip_00000.mp4", "clip_00000_side_by_side.mp4"]
    clip0 = world["clips"][0]
    generated = check_video(out / "clip_00000.mp4", 30, clip0["audio"])
    both = check_video(out / "clip_00000_side_by_side.mp4", 30, clip0["audio"], size=(RES, 2 * RES))
    # H.264 at 64 px keeps about 29 dB of the ground truth; random weights generate noise (about 10 dB)
    assert psnr(both.frames[:, :, RES:], clip0["video"]) > 25 > 15 > psnr(both.frames[:, :, RES:], generated.frames)
    assert psnr(both.frames[:, :, :RES], generated.frames) > 30  # left half: the generated clip
    assert psnr(generated.frames[1:], clip0["video"][1:]) < 15


# ------------------------------------------------------------------------------------------ bad input


def _write_jsonl(world, name, *lines):
    path = world["inputs"] / name
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return path


GOOD = {"reference": "ref0.png", "audio": "speech0.wav", "prompt": "prompt0.json"}


@pytest.mark.parametrize("line,expected", [
    (dict(GOOD, audio="missing.wav"), r"AudioError: .*bad\.jsonl line 2: .*missing\.wav: audio file does not exist"),
    (dict(GOOD, reference="nope.jpg"), r"VideoError: .*bad\.jsonl line 2: .*nope\.jpg: reference image does not exist"),
    (dict(GOOD, prompt={"version": 1, "base": "A person.", "phases": [{"start": 0.5, "end": 2.0, "text": "waves"}]}),
     r"PromptError: .*bad\.jsonl line 2: prompt: phase 1 \('waves'\): window \[0\.5s–2\.0s\] ends after the clip \(1\.2s\)"),
    (dict(GOOD, audio_file="x.wav"), r"DataError: .*bad\.jsonl line 2: unknown field 'audio_file' \(did you mean 'audio'\?\)"),
    ('{"reference": "ref0.png",', r"DataError: .*bad\.jsonl line 2: not valid JSON"),
])
def test_bad_jsonl_line_exits_2_naming_file_and_line(world, capsys, line, expected):
    path = _write_jsonl(world, "bad.jsonl", GOOD, line)
    out = world["root"] / "bad"
    assert generate(world, "--requests", str(path), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("main.py generate: "), err
    import re
    assert re.search(expected, err), err
    assert not list(out.glob("*.mp4"))  # checked before any generation


def test_bad_prompt_file_and_missing_weights_exit_2(world, capsys, tmp_path):
    bad = world["inputs"] / "bad_prompt.json"
    bad.write_text('{"version": 1, "base": "A person.", "phases": []}')
    args = ["--reference", str(world["inputs"] / "ref0.png"), "--audio", str(world["inputs"] / "speech0.wav")]
    assert generate(world, *args, "--prompt", str(bad)) == 2
    assert "PromptError: " + str(bad) + ": no phases" in capsys.readouterr().err
    assert generate(world, *args, "--prompt", str(world["inputs"] / "prompt0.json"),
                    "--weights", str(tmp_path / "nowhere")) == 2
    err = capsys.readouterr().err
    assert "CheckpointError: " + str(tmp_path / "nowhere") + ": no weights found" in err and "Traceback" not in err


def test_load_reference_centre_crops_resizes_and_scales(tmp_path):
    y, x = np.mgrid[0:RES, 0:RES] / RES
    small = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x + 3 * y)], -1) * 255  # smooth, so bicubic is near exact
    small[:8], small[-8:] = 255, 0
    small = small.round().astype(np.uint8)
    big = np.kron(small, np.ones((2, 2, 1), np.uint8))  # 128x128, each pixel 2x2
    canvas = np.full((128, 192, 3), 77, np.uint8)  # wider than high: 32 px of junk either side
    canvas[:, 32:160] = big
    Image.fromarray(canvas).save(tmp_path / "wide.png")
    ref = load_reference(tmp_path / "wide.png", RES)
    assert ref.shape == (3, RES, RES) and ref.dtype == torch.float32
    expected = torch.from_numpy(small).permute(2, 0, 1).float() / 127.5 - 1
    assert (ref - expected).abs().mean() < 0.02
    assert torch.allclose(ref[:, 2:6, 2:-2], torch.ones(1)) and torch.allclose(ref[:, -6:-2, 2:-2], -torch.ones(1))
    Image.fromarray(canvas).resize((RES, RES)).save(tmp_path / "squashed.png")  # what skipping the crop gives
    assert (load_reference(tmp_path / "squashed.png", RES) - expected).abs().mean() > 0.2


def test_load_request_audio_mp3_and_stereo(tmp_path):
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "tone.mp3", tone, SR, format="MP3")
    t32 = np.arange(SR) / (2 * SR)  # 0.5 s at 32 kHz, stereo: resampled to 16 kHz and mixed to mono
    tone32 = 0.3 * np.sin(2 * np.pi * 440 * t32)
    sf.write(tmp_path / "stereo.wav", np.stack([tone32, 0.5 * tone32], 1), 2 * SR)
    mp3 = load_request_audio(tmp_path / "tone.mp3", SR)
    assert abs(len(mp3) - SR) < 0.1 * SR and np.sqrt(np.mean(mp3[2000:-2000] ** 2)) == pytest.approx(0.3 / 2 ** .5, rel=0.1)
    stereo = load_request_audio(tmp_path / "stereo.wav", SR)
    assert stereo.shape == (SR // 2,) and np.allclose(stereo[100:-100], 0.75 * tone[: SR // 2][100:-100], atol=0.02)


# ------------------------------------------------------------------------------------------ attention mass


def _softmax(logits, mask):
    return torch.softmax(logits.masked_fill(~mask[:, None, :], float("-inf")), -1)


def test_attention_mass_per_frame_sums_to_one_over_unpadded_blocks():
    torch.manual_seed(0)
    B, F, per_frame, Lt = 2, 5, 6, 9
    phase = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 0, 0], [0, 1, 1, 2, 3, 3, 0, 0, 0]])
    mask = torch.tensor([[True] * 7 + [False] * 2, [True] * 6 + [False] * 3])
    layers = {layer: _softmax(torch.randn(B, F * per_frame, Lt) * 3, mask) for layer in (0, 3)}
    out = frame_phase_mass(layers, phase, mask, F)
    assert out.mass.shape == (B, F, 4) and out.layers == [0, 3]
    torch.testing.assert_close(out.mass.sum(-1), torch.ones(B, F, dtype=torch.float64))
    assert out.padding.abs().max() == 0
    assert out.tokens.tolist() == [[2, 3, 2, 0], [1, 2, 1, 2]]
    # Wan's setting (padding attended): blocks + padding sum to 1, padding is reported, not hidden in base
    unmasked = {0: torch.softmax(torch.randn(B, F * per_frame, Lt), -1)}
    out = frame_phase_mass(unmasked, phase, mask, F)
    assert out.padding.min() > 0
    torch.testing.assert_close(out.mass.sum(-1) + out.padding, torch.ones(B, F, dtype=torch.float64))


def test_planted_attention_pattern_is_recovered_per_frame_and_phase():
    """Frame f's tokens (frame-major order) put a planned share on each block; tokens and layers scatter
    around the plan, the aggregation must return the plan exactly."""
    gen = torch.Generator().manual_seed(1)
    F, per_frame = 4, 3
    phase = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 0]])
    mask = torch.tensor([[True] * 7 + [False]])
    plan = torch.tensor([[0.2, 0.7, 0.1], [0.2, 0.7, 0.1], [0.3, 0.1, 0.6], [0.5, 0.25, 0.25]], dtype=torch.float64)
    layers = {}
    for layer in range(2):
        probs = torch.zeros(1, F * per_frame, 8, dtype=torch.float64)
        for f in range(F):
            # token shares of frame f: plan + zero-mean jitter over the frame's tokens and the two layers
            jitter = torch.randn(per_frame, 3, generator=gen, dtype=torch.float64) * 0.03
            jitter -= jitter.mean(0)
            jitter *= 1 if layer == 0 else -1
            for j in range(per_frame):
                shares = plan[f] + jitter[j]
                for k in range(3):  # split block k's share unevenly over its tokens
                    tokens = ((phase[0] == k) & mask[0]).nonzero().flatten()
                    split = torch.rand(len(tokens), generator=gen, dtype=torch.float64) + 0.1
                    probs[0, f * per_frame + j, tokens] = shares[k] * split / split.sum()
        layers[layer] = probs
    out = frame_phase_mass(layers, phase, mask, F)
    torch.testing.assert_close(out.mass[0], plan)
    # the in-window summary: phase 1 asked for [0, 0.5) s = frames 0 and 1 (at 0.1, 0.3, 0.5, 0.7 s)
    seconds = torch.tensor([0.1, 0.3, 0.5, 0.7])
    rows = phase_window_summary(out.mass[0], seconds, [(0.0, 0.5), (0.5, 0.8)])
    assert rows[0]["in_window_share"] == pytest.approx(1.4 / 1.75)
    assert rows[0]["window_frame_fraction"] == 0.5
    assert rows[1]["in_window_share"] == pytest.approx(0.85 / 1.05)
    assert rows[0]["mean_in_window"] == pytest.approx(0.7) and rows[0]["mean_outside_window"] == pytest.approx(0.175)


def test_clip_record_summary_and_plot_png(tmp_path):
    from inference.plots import phase_colour, plot_phase_attention
    seconds = torch.linspace(0.1, 3.9, 20)
    inside = (seconds >= 1.0) & (seconds < 2.0)
    mass = torch.stack([torch.full((20,), 0.5), torch.where(inside, 0.45, 0.05), torch.where(inside, 0.05, 0.45)], 1)
    prompt = {"version": 1, "duration": 4.0, "base": "A person.",
              "phases": [{"start": 1.0, "end": 2.0, "text": "waves", "action": "wave"}]}
    record = clip_record("clip", mass, torch.zeros(20), torch.tensor([3, 2, 0]), seconds, prompt, [0, 1], 0.5, 7)
    assert [b["label"] for b in record["blocks"]] == ["base", "phase 1"]  # batch-padding column dropped
    phase1 = record["blocks"][1]
    assert phase1["action"] == "wave" and phase1["num_tokens"] == 2
    assert phase1["in_window_share"] == pytest.approx(5 * 0.45 / (5 * 0.45 + 15 * 0.05))
    summary = summarize_records([record, record])
    assert summary["num_phases"] == 2 and summary["mean_in_window_share"] == pytest.approx(phase1["in_window_share"])
    path = plot_phase_attention(record, tmp_path / "fig4.png")
    assert [p.name for p in tmp_path.iterdir()] == ["fig4.png"]  # atomic: no temporary file left
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    shade = np.round(255 * (0.15 * np.array(phase_colour(1)) + 0.85))  # the phase-1 window, alpha 0.15 on white
    shaded = np.abs(image - shade).max(-1) <= 2
    columns = np.nonzero(shaded.sum(0) > 50)[0]
    # the shaded band spans [1, 2] s of the [0, 4] s axis: a quarter of the plot width
    assert 0.2 < (columns.max() - columns.min()) / image.shape[1] < 0.3
