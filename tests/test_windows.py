"""Audio of any length (inference/windows.py): the window plan, prompts cut to window time, and chained
generation on the smoke model (1.2 s clips: windows of T' = 29 frames): motion frames carried exactly,
audio features computed once, window 0 = a one-window generation, one mp4 with the whole audio."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import main
from common.errors import ConfigError
from common.video_io import read_video
from configs.loader import load_config
from inference.windows import WINDOW_SEED_STRIDE, plan_windows
from models.contracts import ClipBatch
from models.prompt import Phase, StructuredPrompt, cut_window, from_json, to_brief, to_global, to_json, validate
from synthavatar.dataset import ensure_split, load_clip

FPS, SR = 25, 16000


# ------------------------------------------------------------------------------------------ plan and prompt


@pytest.mark.parametrize("total,length,motion", [(90, 29, 1), (30, 29, 1), (1500, 97, 1), (200, 97, 5), (98, 97, 9)])
def test_plan_covers_every_frame_once_with_trained_length_windows(total, length, motion):
    plan = plan_windows(total, length, motion)
    assert plan.starts[0] == 0 and plan.starts[-1] + length == total  # the last window ends at the last frame
    assert all(b > a for a, b in zip(plan.starts, plan.starts[1:]))
    assert all(b - a <= length - motion for a, b in zip(plan.starts, plan.starts[1:]))  # motion frames exist
    spans = [plan.span(k) for k in range(len(plan.starts))]
    assert spans[0][0] == 0 and spans[-1][1] == total
    assert all(spans[k][1] == spans[k + 1][0] for k in range(len(spans) - 1))  # contiguous, no frame twice
    for k, (a, b) in enumerate(spans):  # a window contributes only frames it generated
        assert plan.starts[k] <= a < b <= plan.starts[k] + length
        if k:  # ... after the motion frames it was given, which come from earlier windows
            assert a == plan.starts[k] + motion and plan.starts[k] >= 0
    assert plan.boundaries == [a for a, _ in spans[1:]]
    with pytest.raises(ValueError, match="fit one window"):
        plan_windows(length, length, motion)


def test_cut_window_continues_a_phase_across_the_boundary_and_keeps_its_index():
    prompt = validate(StructuredPrompt("A person.", (Phase(0.5, 1.5, "waves", "wave"), Phase(2.0, 3.5, "nods", "nod")),
                                       4.0))
    first, kept = cut_window(prompt, 0.0, 1.0)
    assert kept == [0] and first.phases == (Phase(0.5, 1.0, "waves", "wave"),) and first.duration == 1.0
    second, kept = cut_window(prompt, 1.0, 2.5)
    assert kept == [0, 1] and [(p.start, p.end, p.text) for p in second.phases] == [(0.0, 0.5, "waves"),
                                                                                 (1.0, 1.5, "nods")]
    gap, kept = cut_window(prompt, 1.6, 1.9)  # between the phases: base block only
    assert gap.phases == () and kept == [] and gap.base == "A person."
    assert to_global(gap) == "A person." and to_brief(gap) == "A person."  # what the global/brief rows encode
    _, kept = cut_window(prompt, 1.0, 2.6, min_piece=0.55)  # 0.5 s of waves is too short, 0.6 s of nods is not
    assert kept == [1]


# ------------------------------------------------------------------------------------------ generation


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Smoke config with random weights, one test clip's inputs, and that clip's audio three times over."""
    from system.build import build_system
    from system.weights import save_weights

    root = tmp_path_factory.mktemp("windows")
    overrides = [f"run.output_dir={root / 'runs'}", f"data.root={root / 'data'}",
                 f"model.codec.cache_dir={root / 'codec'}", "data.duration=1.2", "data.gen_workers=1",
                 "model.preset=tiny", "sample.steps=2", "data.num_test=1"]
    cfg = load_config("smoke", overrides)
    save_weights(build_system(cfg, progress=False).model.state_dict(), root / "runs" / "smoke" / "fit", {})
    clip = load_clip(ensure_split(cfg.data, "test", progress=False)[0])
    inputs = root / "inputs"
    inputs.mkdir()
    Image.fromarray(clip["video"][0]).save(inputs / "ref.png")
    audio = np.concatenate([clip["audio"]] * 3)  # 3.6 s = 90 frames
    sf.write(inputs / "long.wav", audio, SR, subtype="FLOAT")
    prompt = {"version": 1, "base": clip["prompt"]["base"],
              "phases": [{"start": 0.2, "end": 1.5, "text": "waves at the camera", "action": "wave"},  # crosses 1.12 s
                         {"start": 2.6, "end": 3.4, "text": "nods", "action": "nod"}]}
    (inputs / "long.json").write_text(json.dumps(prompt))
    return {"root": root, "overrides": overrides, "cfg": cfg, "inputs": inputs, "clip": clip, "audio": audio,
            "prompt": prompt}


def generator_for(world, *overrides):
    from inference.generate import Generator
    cfg = load_config("smoke", world["overrides"] + list(overrides))
    return Generator(cfg, progress=False)


def long_batch(world, generator):
    from inference.requests import load_reference
    reference = load_reference(world["inputs"] / "ref.png", 64)[None]
    return ClipBatch(reference=reference, prompt=[world["prompt"] | {"duration": 3.6}],
                     audio=torch.from_numpy(world["audio"])[None], num_frames=90)


@pytest.mark.parametrize("motion", [1, 5])
def test_chained_windows_carry_motion_frames_and_read_one_feature_track(world, motion, monkeypatch):
    generator = generator_for(world, f"sample.motion_frames={motion}")
    encoder, codec = generator.encoder, generator.codec
    calls = []
    encode_audio = encoder.encode_audio
    monkeypatch.setattr(encoder, "encode_audio", lambda wave, n: calls.append(n) or encode_audio(wave, n))
    batch = long_batch(world, generator)
    result = generator.generate(batch, 90, [3])
    plan = result.plan
    assert result.frames.shape == (1, 90, 64, 64, 3) and plan.length == 29 and plan.motion == motion
    assert calls == [90]  # the whole track once
    features = encode_audio(batch.audio, 90)
    prefix = codec.num_latent_frames(motion)
    for k, window in enumerate(result.windows):
        assert torch.equal(window.cond.audio, features[:, window.start:window.start + 29])
        assert window.seeds == [3 + k * WINDOW_SEED_STRIDE]
        if k:  # the clean prefix = the video so far at the window's first frames, re-encoded
            frames = torch.from_numpy(result.frames[0, window.start:window.start + motion]).float() / 127.5 - 1
            encoded = codec.encode(frames.permute(3, 0, 1, 2)[None])  # (1, 3, M, H, W) -> (1, C, P, h, w)
            assert window.latents.shape[2] == codec.num_latent_frames(29)
            assert torch.equal(window.latents[:, :, :prefix], encoded)
    # window 0 is exactly a one-window generation of the first T' frames with the same conditions
    first, _ = cut_window(from_json(world["prompt"], duration=3.6), 0.0, 29 / FPS)
    one = ClipBatch(reference=batch.reference, prompt=[to_json(validate(first))], audio_features=features[:, :29], num_frames=29)
    latents, _, kept = generator.latents(one, 29, [3])
    assert kept == 29 and torch.equal(latents, result.windows[0].latents)
    # the phase crossing the first boundary (0.2-1.5 s, window 0 ends at 1.16 s) is in both windows' prompts
    assert result.windows[0].phases == [[0]] and result.windows[1].phases == [[0]]
    assert result.windows[-1].phases == [[1]]


def test_window_reference_image_conditions_later_windows_on_the_reference_image(world):
    generator = generator_for(world, "sample.window_reference=image")
    batch = long_batch(world, generator)
    result = generator.generate(batch, 90, [0])
    image = generator.codec.encode(batch.reference[:, :, None])
    assert result.windows[0].cond.reference is None  # window 0: frame 0 is the reference anyway
    assert all(torch.equal(w.cond.reference, image) for w in result.windows[1:])


def test_global_prompt_rows_generate_windows_that_fall_between_phases(world):
    generator = generator_for(world, "model.text.prompt_mode=global", "sample.motion_frames=1")
    batch = long_batch(world, generator)
    prompt = batch.prompt[0] | {"phases": [{"start": 0.2, "end": 1.0, "text": "waves"},
                                           {"start": 3.0, "end": 3.5, "text": "nods"}]}
    result = generator.generate(batch.replace(prompt=[prompt]), 90, [0])
    assert result.windows[1].phases == [[]] and result.frames.shape[1] == 90  # 1.12-2.28 s: no phase


def test_other_ranks_run_the_same_model_calls_without_writing(world, tmp_path, monkeypatch):
    """`generate --parallel`: a rank with write=False makes every model call (the attention pass too) and
    writes nothing, so the ranks' collectives stay in step."""
    from inference.outputs import ClipWriter
    generator = generator_for(world)
    calls = []
    attention = generator.text_attention
    monkeypatch.setattr(generator, "text_attention", lambda *a, **k: calls.append(1) or attention(*a, **k))
    batch = long_batch(world, generator)
    assert ClipWriter(generator, tmp_path / "quiet", False, True, write=False).write_batch(["a"], batch, 90, [0]) == []
    quiet = len(calls)
    assert ClipWriter(generator, tmp_path / "rank0", False, True).write_batch(["a"], batch, 90, [0])
    assert quiet == len(calls) - quiet == 4 and not (tmp_path / "quiet").exists()


@pytest.mark.parametrize("override,message", [("sample.motion_frames=2", "not a length the codec encodes"),
                                              ("sample.motion_frames=29", "leaves no new frame")])
def test_bad_motion_frames_fail_before_generating(world, override, message):
    with pytest.raises(ConfigError, match=message):
        generator_for(world, override)


def test_long_request_writes_one_mp4_with_the_whole_audio_and_a_stitched_attention_plot(world, capsys):
    inputs, out = world["inputs"], world["root"] / "long"
    assert main.main(["generate", "-e", "smoke", "--reference", str(inputs / "ref.png"), "--audio",
                      str(inputs / "long.wav"), "--prompt", str(inputs / "long.json"), "--out", str(out),
                      *world["overrides"]]) == 0
    assert "long: 3.6 s of audio -> 4 chained windows of 1.16 s (5 motion frames)" in capsys.readouterr().out
    video = read_video(out / "long.mp4", sample_rate=SR)
    assert video.frames.shape[0] == 90 and abs(len(video.audio) - 90 * SR / FPS) <= SR / FPS / 2
    n = min(len(video.audio), len(world["audio"]))
    assert np.corrcoef(video.audio[:n], world["audio"][:n])[0, 1] > 0.95
    record = json.loads((out / "long_phase_attention.json").read_text())
    seconds = np.array(record["frame_seconds"])
    assert np.all(np.diff(seconds) > 0) and seconds[0] < 0.1 and seconds[-1] > 3.4  # the whole clip, in order
    mass = np.array([b["mass"] for b in record["blocks"]])  # (K + 1, F): the request's blocks
    assert mass.shape == (3, len(seconds)) and np.allclose(mass.sum(0), 1, atol=1e-5)
    # windows start at 0, 0.96, 1.92, 2.44 s (5 motion frames); phase 2 (2.6-3.4 s) is first in the window
    # from 1.92 s, whose own frames start at 2.12 s: no frame before that attends to it
    assert np.all(mass[2, seconds < 2.1] == 0) and mass[2, (seconds > 2.6) & (seconds < 3.4)].min() > 0
    assert [b["window"] for b in record["blocks"][1:]] == [[0.2, 1.5], [2.6, 3.4]]
