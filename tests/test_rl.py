"""The RL prompt enhancer (rl/): timing extraction, attributes, each reward, guards against reward
hacking, and the whole SFT -> GRPO -> evaluation pipeline on a tiny random policy (with resume)."""
import json

import numpy as np
import pytest

from rl.attributes import VisionLanguageAttributes, ground_truth_attributes, split_attribute_text
from rl.examples import EnhancerExample, synthavatar_examples, template_enhance
from rl.rewards import REWARDS, RewardTools, fluency_from_logprob, score, weighted_total
from rl.timing import AudioTiming, audio_timing

WEIGHTS = {"format": 1.0, "temporal": 1.0, "visual": 0.5, "specificity": 0.5, "faithfulness": 1.0,
           "fluency": 0.5, "anti_degeneration": 1.0}
NO_TOOLS = RewardTools()


def _example(actions=("wave", "thumbs_up")) -> EnhancerExample:
    timing = AudioTiming(4.0, [(0.2, 1.6), (2.0, 3.8)], [(0.0, 0.2), (1.6, 2.0), (3.8, 4.0)], [0.7, 2.9])
    return EnhancerExample("t", "a wave, then thumbs up", ["light skin", "short black hair", "brown eyes",
                           "a short-sleeved red shirt", "a plain beige wall"], "cheerful", list(actions), timing)


GOOD = ("Base: A person with light skin, short black hair and brown eyes, wearing a short-sleeved red shirt, "
        "stands in front of a plain beige wall and speaks cheerfully.\n"
        "Phase-1 [0.2-1.6]: The person waves at the camera with the right hand.\n"
        "Phase-2 [2.0-3.8]: The person gives a thumbs up with the right thumb.")
BASE = GOOD.splitlines()[0]


def test_timing_finds_the_speech_phrases_of_synthavatar_audio():
    from synthavatar import audio
    hits = total = 0
    for seed in range(8):
        schedule = audio.sample_schedule(np.random.default_rng(seed), 4.0)
        timing = audio_timing(audio.synthesize(schedule, seed=seed), audio.SAMPLE_RATE)
        found = [t for seg in timing.segments for t in seg]
        truth = [t for phrase in schedule.phrases for t in phrase]
        hits += sum(min(abs(t - f) for f in found) < 0.1 for t in truth)
        total += len(truth)
        assert timing.duration == pytest.approx(4.0, abs=0.01)
        assert all(0 <= p <= 4.0 for p in timing.peaks) and len(timing.peaks) <= 4
    assert hits / total >= 0.9, f"phrase boundaries found within 0.1 s: {hits}/{total}"
    with pytest.raises(ValueError, match="non-empty mono"):
        audio_timing(np.zeros((2, 100)), 16000)


def test_attributes_ground_truth_and_vlm_interface(tmp_path):
    ex = synthavatar_examples("train", 1)[0]
    assert len(ex.attributes) == 5 and ex.attributes[-1].endswith("wall")
    assert ex.attributes == ground_truth_attributes(
        __import__("synthavatar.clip", fromlist=["x"]).sample_clip_spec(
            np.random.SeedSequence([0, 7919, 0, 0]), "train", 4.0)["identity"])
    assert split_attribute_text("short black hair, red shirt; a plain wall.") == ["short black hair", "red shirt", "a plain wall"]
    with pytest.raises(FileNotFoundError, match="vision-language.*/nonexistent/vlm .*rl.vlm_path.* does not exist"):
        VisionLanguageAttributes("/nonexistent/vlm")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'config.json'} is missing"):
        VisionLanguageAttributes(tmp_path)


def test_template_enhancer_is_valid_and_scores_high_on_every_reward():
    for ex in synthavatar_examples("train", 4, seed=3):
        s = score(template_enhance(ex), ex, NO_TOOLS)
        assert s["format"] == 1.0 and s["faithfulness"] == 1.0 and s["specificity"] == 1.0, s
        assert s["anti_degeneration"] == 1.0 and s["temporal"] > 0.5 and s["visual"] > 0.7, s


def test_format_reward_checks_windows_against_the_audio():
    ex = _example()
    assert REWARDS["format"](GOOD, ex, NO_TOOLS) == 1.0
    outside = GOOD.replace("[2.0-3.8]", "[2.0-4.5]")
    overlap = GOOD.replace("[2.0-3.8]", "[1.2-3.8]")
    backwards = GOOD.replace("[0.2-1.6]", "[1.6-0.2]")
    for bad in (outside, overlap, backwards):
        assert REWARDS["format"](bad, ex, NO_TOOLS) == 0.25              # right shape, invalid windows
        assert all(REWARDS[n](bad, ex, NO_TOOLS) == 0 for n in ("temporal", "visual", "specificity", "faithfulness"))
    assert REWARDS["format"]("A person waves and gives a thumbs up.", ex, NO_TOOLS) == 0.0


def test_temporal_reward_prefers_boundaries_on_speech():
    ex = _example()
    off = GOOD.replace("[0.2-1.6]", "[0.5-1.1]").replace("[2.0-3.8]", "[1.1-2.4]")
    assert REWARDS["temporal"](GOOD, ex, NO_TOOLS) > 0.95 > 0.6 > REWARDS["temporal"](off, ex, NO_TOOLS)


def test_visual_reward_counts_attributes_and_uses_the_embedding():
    ex = _example()
    vague = GOOD.replace(BASE, "Base: A person talks to the camera.")
    assert REWARDS["visual"](GOOD, ex, NO_TOOLS) == 1.0
    assert REWARDS["visual"](vague, ex, NO_TOOLS) == 0.0
    no_manner = GOOD.replace(" and speaks cheerfully", "")
    assert REWARDS["visual"](no_manner, ex, NO_TOOLS) == pytest.approx(5 / 6)  # the mood counts as one attribute
    aligned = RewardTools(embed=lambda texts: [[1.0, 0.0]] * len(texts))
    orthogonal = RewardTools(embed=lambda texts: [[1.0, 0.0], [0.0, 1.0]])
    assert REWARDS["visual"](GOOD, ex, aligned) == pytest.approx(1.0)
    assert REWARDS["visual"](GOOD, ex, orthogonal) == pytest.approx(0.6)


def test_specificity_and_faithfulness():
    ex = _example()
    assert REWARDS["specificity"](GOOD, ex, NO_TOOLS) == 1.0 and REWARDS["faithfulness"](GOOD, ex, NO_TOOLS) == 1.0
    vague = GOOD.replace("waves at the camera with the right hand", "is happy").replace(
        "gives a thumbs up with the right thumb", "feels good")
    assert REWARDS["specificity"](vague, ex, NO_TOOLS) == 0.0
    swapped = _example(("thumbs_up", "wave"))
    assert REWARDS["faithfulness"](GOOD, swapped, NO_TOOLS) == 0.5       # wrong order: only one in sequence
    extra = GOOD + "\nPhase-3 [3.8-4.0]: The person nods the head."
    assert REWARDS["faithfulness"](extra, ex, NO_TOOLS) == pytest.approx(2 / 3)


def test_fluency_uses_the_reference_lm_score_monotonically():
    ex = _example()
    assert REWARDS["fluency"](GOOD, ex, NO_TOOLS) == 0.0                 # no scorer: no credit
    values = [REWARDS["fluency"](GOOD, ex, RewardTools(logprob=lambda t, lp=lp: lp)) for lp in (-8, -3, -1)]
    assert values[0] < 0.01 and values[1] == pytest.approx(0.5) and 0.5 < values[2] < 1
    assert fluency_from_logprob(-3.0) == pytest.approx(0.5)


DEGENERATE = {
    "repeated verbs": (BASE + "\nPhase-1 [0.2-1.6]: waves waves raises raises the hand hand hand\n"
                       "Phase-2 [2.0-3.8]: waves waves raises raises the hand hand hand", "specificity"),
    "empty phases": (BASE + "\nPhase-1 [0.2-1.6]: waves\nPhase-2 [2.0-3.8]: thumb", "anti_degeneration"),
    "one phase covering everything": (BASE + "\nPhase-1 [0.0-4.0]: The person waves with the right hand and "
                                      "gives a thumbs up.", "anti_degeneration"),
    "copied attribute list": ("Base: light skin, short black hair, brown eyes, a short-sleeved red shirt, a plain "
                              "beige wall\n" + "\n".join(GOOD.splitlines()[1:]), "visual"),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_outputs_score_low(name):
    """Reward hacking guards: each degenerate output loses on its targeted reward and in total."""
    ex = _example()
    text, target = DEGENERATE[name]
    good, bad = score(GOOD, ex, NO_TOOLS), score(text, ex, NO_TOOLS)
    assert bad[target] <= 0.35 * good[target], (name, bad)
    assert weighted_total(bad, WEIGHTS) < weighted_total(good, WEIGHTS) - 0.1, (name, bad)


def test_example_round_trips_through_json():
    ex = _example()
    back = EnhancerExample.from_json(ex.to_json())
    assert back == ex and json.loads(ex.to_json())["timing"]["peaks"] == [0.7, 2.9]


def test_rl_config_rejects_bad_values():
    from configs.loader import ConfigError, load_config
    with pytest.raises(ConfigError, match="rl.policy"):
        load_config("configs/rl/tiny.yaml", ["rl.policy=gpt9"])
    with pytest.raises(ConfigError, match="num_generations"):
        load_config("configs/rl/tiny.yaml", ["rl.num_generations=1"])
    with pytest.raises(ConfigError, match="policy_path"):
        load_config("configs/rl/tiny.yaml", ["rl.policy=local"])


def test_pipeline_sft_grpo_evaluate_on_a_tiny_policy_and_resume(tmp_path, monkeypatch):
    """main.py rl end to end on the tiny config: SFT lowers its loss, GRPO logs every reward by name and
    checkpoints, a rerun skips finished stages, and GRPO resumes from its checkpoint after a crash."""
    import main
    monkeypatch.setattr("rl.commands.CACHE", tmp_path / "cache")
    run = tmp_path / "runs" / "rl_tiny" / "rl"
    args = ["rl", "-e", "configs/rl/tiny.yaml", f"run.output_dir={tmp_path / 'runs'}"]
    assert main.main(args) == 0
    sft_log = json.loads((run / "sft" / "log_history.json").read_text())
    losses = [r["loss"] for r in sft_log if "loss" in r]
    assert losses[-1] < losses[0]
    grpo_log = json.loads((run / "grpo" / "log_history.json").read_text())
    assert all(f"rewards/{n}/mean" in grpo_log[0] for n in REWARDS)
    report = json.loads((run / "eval.json").read_text())
    assert set(report["rows"]) == {"template (rule-based)", "initial policy", "SFT", "SFT + GRPO"}
    assert report["rows"]["template (rule-based)"]["validity"] == 1.0
    # crash after GRPO's first checkpoint: drop the final model and the last checkpoint, rerun
    import shutil
    shutil.rmtree(run / "grpo" / "final")
    shutil.rmtree(run / "grpo" / "checkpoint-2")
    assert main.main(args + ["rl.grpo_steps=3", "--stage", "grpo"]) == 0
    resumed = json.loads((run / "grpo" / "log_history.json").read_text())
    logged = [r for r in resumed if "rewards/format/mean" in r]
    assert [r["step"] for r in logged] == [1, 2, 3]
    # step 1 comes from checkpoint-1's state (same wall-clock step_time), steps 2-3 were trained anew
    assert logged[0] == [r for r in grpo_log if "rewards/format/mean" in r][0]
