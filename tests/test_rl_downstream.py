"""The enhancer's downstream table (rl/downstream.py): prompt conditions per clip, and generate + score
with a generator on its held-out clips (tiny random DiT and policy, smoke-sized data and probe)."""
import json

import numpy as np
import pytest
import torch

from models.prompt import from_json
from rl.downstream import RAW, TEMPLATE, TRUTH, clip_example, condition_prompts, raw_prompt
from rl.examples import EnhancerExample
from rl.timing import AudioTiming

EX = EnhancerExample("clip_00000", "make a cheerful presenter do a wave, then a thumbs up",
                     ["light skin", "short black hair", "brown eyes", "a red shirt", "a plain beige wall"],
                     "cheerful", ["wave", "thumbs_up"],
                     AudioTiming(4.0, [(0.2, 1.6), (2.0, 3.8)], [(0.0, 0.2), (1.6, 2.0), (3.8, 4.0)], [0.7, 2.9]))
GOOD = ("Base: A person with light skin and short black hair speaks cheerfully.\n"
        "Phase-1 [0.2-1.6]: The person waves with the right hand.\n"
        "Phase-2 [2.0-3.8]: The person gives a thumbs up with the right thumb.")


def test_conditions_raw_enhanced_fallback_template_and_truth():
    truth = {"version": 1, "base": "x", "phases": [{"start": 0.0, "end": 4.0, "text": "y"}]}
    completions = {"good policy": [GOOD, GOOD], "broken policy": [GOOD, "Phase-1 [0-9]: waves"]}
    prompts, validity = condition_prompts([EX, EX], completions, [truth, truth], 4.0)
    assert list(prompts) == [RAW, "good policy", "broken policy", TEMPLATE, TRUTH]
    raw = from_json(prompts[RAW][0])
    assert raw.base == EX.short_prompt and [(p.start, p.end, p.text) for p in raw.phases] == [(0.0, 4.0, EX.short_prompt)]
    good = from_json(prompts["good policy"][0])
    assert [(p.start, p.end) for p in good.phases] == [(0.2, 1.6), (2.0, 3.8)]
    assert prompts["broken policy"][1] == prompts[RAW][1]  # invalid output: the raw prompt, and counted
    assert validity == {RAW: 1.0, "good policy": 1.0, "broken policy": 0.5, TEMPLATE: 1.0, TRUTH: 1.0}
    assert prompts[TRUTH] == [truth, truth]
    assert raw_prompt("hi", 1.2)["phases"][0]["end"] == 1.2


def test_clip_example_reads_the_clip_spec_and_its_audio():
    from synthavatar import audio
    from synthavatar.clip import sample_clip_spec
    spec = sample_clip_spec(np.random.SeedSequence([0, 2, 0]), "test", 4.0)
    wave = audio.synthesize(audio.AudioSchedule.from_dict(spec["audio"]), seed=spec["audio_seed"])
    ex = clip_example({"spec": spec, "audio": wave}, 3, audio.SAMPLE_RATE)
    assert ex.clip == "clip_00003" and ex.actions == [p["action"] for p in spec["phases"]] and ex.mood == spec["mood"]
    assert ex.short_prompt.startswith(f"make a {spec['mood']} presenter do")  # the held-out wording
    assert ex.timing.duration == pytest.approx(4.0, abs=0.01) and ex.timing.segments


def test_downstream_table_generates_and_scores_every_condition(tmp_path):
    """Random policy (its outputs do not parse: the raw fallback) and a random tiny DiT: a condition that
    falls back to the raw prompt reproduces the raw videos exactly; the ground-truth prompt changes them
    (so the per-clip prompts reach the model)."""
    from common.video_io import read_video
    from configs.loader import load_config, save_config
    from rl.downstream import downstream_table
    from rl.examples import template_enhance
    from rl.policy import build_tiny_policy
    from system.build import build_system
    from system.weights import save_weights

    fit = tmp_path / "runs" / "smoke" / "fit"
    cfg = load_config("smoke", [f"run.output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}",
                                f"model.codec.cache_dir={tmp_path / 'codec'}", f"eval.probe.cache_dir={tmp_path / 'probe'}",
                                "data.duration=1.2", "data.gen_workers=1", "model.preset=tiny", "sample.steps=2"])
    model = build_system(cfg, progress=False).model
    torch.nn.init.normal_(model.head.head.weight, std=0.5)  # Wan's zero output head ignores every condition
    save_weights(model.state_dict(), fit, {"run": "smoke"})
    save_config(cfg, fit)
    policy = build_tiny_policy(tmp_path / "policy", [template_enhance(EX), GOOD] * 4)
    rl = load_config("configs/rl/tiny.yaml", [f"rl.generator={fit}", "rl.downstream_clips=2",
                                              "rl.eval_max_new_tokens=8"]).rl
    text = downstream_table(rl, {"random policy": policy}, tmp_path / "out", progress=False)
    report = json.loads((tmp_path / "out" / "downstream.json").read_text())
    assert set(report["conditions"]) == {RAW, "random policy", TEMPLATE, TRUTH} and "h_at_s" in text
    assert report["validity"]["random policy"] == 0.0
    rows = {name: c["rows"] for name, c in report["conditions"].items()}
    assert rows["random policy"] == rows[RAW]
    videos = {name: read_video(c["videos"] + "/clip_00000.mp4").frames for name, c in report["conditions"].items()}
    assert np.array_equal(videos["random policy"], videos[RAW])
    assert not np.array_equal(videos[TRUTH], videos[RAW])
    grid = read_video(tmp_path / "out" / "compare" / "clip_00001.mp4")  # 4 conditions | ground truth, labelled
    assert grid.frames.shape == (30, 12 + 64, 5 * 64, 3) and grid.audio is not None
    lines = [json.loads(line) for line in (tmp_path / "out" / "prompts.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0][RAW]["base"] == lines[0]["short_prompt"]


def test_downstream_without_a_generator_or_policy_says_what_to_set(tmp_path, capsys):
    from configs.loader import ConfigError, load_config
    from rl.commands import _downstream
    from rl.downstream import downstream_table
    rl = load_config("configs/rl/tiny.yaml").rl
    with pytest.raises(ConfigError, match="needs rl.generator="):
        _downstream(rl, tmp_path, {"SFT": tmp_path / "sft"}, explicit=True)
    assert _downstream(rl, tmp_path, {"SFT": tmp_path / "sft"}, explicit=False) == {}
    assert "downstream table skipped" in capsys.readouterr().out
    rl.generator = str(tmp_path)
    with pytest.raises(ConfigError, match="no trained policy"):
        _downstream(rl, tmp_path, {"SFT": tmp_path / "sft"}, explicit=True)
    rl.downstream_policies = False  # the policy-free rows need no policy: it goes on to the generator
    with pytest.raises(ConfigError, match=f"{tmp_path} is not a fit directory"):
        _downstream(rl, tmp_path, {"SFT": tmp_path / "sft"}, explicit=True)
    with pytest.raises(ConfigError, match=f"{tmp_path} is not a fit directory"):
        downstream_table(rl, {"SFT": tmp_path}, tmp_path / "out", progress=False)
