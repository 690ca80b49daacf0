"""Metric sanity, the acceptance test of the evaluation: ground truth scores near the best value, and
each perturbation (audio shift, swapped actions, moved phase windows, swapped identity) degrades the
matching metric monotonically with its size. Trains the default probe once for this module (about
3-4 minutes on 2 cores, the bulk of the suite's time); thresholds leave room for its measured error.
"""
import numpy as np
import pytest

from configs.loader import load_config
from evaluation.evaluator import score_video
from evaluation.probe_train import get_probe
from synthavatar.actions import ACTION_NAMES
from synthavatar.clip import perturbed, render_clip
from synthavatar.dataset import ensure_split, load_clip
from synthavatar.identity import interpolate_identity

NUM_CLIPS = 8
TOL = 0.03  # allowed non-monotonic wiggle between neighbouring perturbation sizes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sanity")
    # The default probe settings (the probe every evaluation uses), on a small world.
    cfg = load_config(None, [f"data.root={root}/data", f"eval.probe.cache_dir={root}/probe",
                             "data.num_train=0", "data.num_val=8", f"data.num_test={NUM_CLIPS}"])
    probe = get_probe(cfg, progress=False)
    clips = [load_clip(p) for p in ensure_split(cfg.data, "test", progress=False)]
    return cfg, probe, clips


def _score(world, clip, spec=None, wave=None):
    cfg, probe, _ = world
    video = clip["video"] if spec is None else render_clip(spec, cfg.data.resolution, cfg.data.fps)["video"]
    return score_video(probe, video, clip["audio"] if wave is None else wave, clip, cfg)


def _mean_curve(world, make_variant, sizes, metric):
    """Mean of `metric` over the test clips for each perturbation size."""
    _, _, clips = world
    return [float(np.mean([make_variant(clip, size)[metric] for clip in clips])) for size in sizes]


def _assert_degrades(curve, margin, higher_is_better=True):
    print("curve:", [round(v, 3) for v in curve])
    sign = 1 if higher_is_better else -1
    steps = [sign * (b - a) for a, b in zip(curve, curve[1:])]
    assert all(step <= TOL for step in steps), curve
    assert sign * (curve[0] - curve[-1]) >= margin, curve


def test_ground_truth_scores_near_best(world):
    _, probe, clips = world
    rows = [_score(world, clip) for clip in clips]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if not k.startswith("_")}
    print("ground truth:", mean, "probe:", probe.report)
    assert mean["psnr"] == 100.0 and mean["ssim"] == pytest.approx(1.0)
    assert mean["abs_offset"] <= 0.5
    # Action metrics are capped by the probe's pose error (README: ~0.7-0.8 on ground truth).
    assert mean["h_at_s"] >= 0.65 and mean["aa"] >= 0.65 and mean["tc"] >= 0.55
    assert mean["csim"] >= 0.8


def test_ground_truth_beats_a_mismatched_request_on_sync_and_expressiveness(world):
    """For metrics whose best value is not a constant, ground truth must beat a mismatched pairing:
    each video scored against the next clip's audio and emphasis ground truth."""
    _, _, clips = world
    matched = [_score(world, c) for c in clips]
    swapped = []
    for i, clip in enumerate(clips):
        other = clips[(i + 1) % len(clips)]
        swapped.append(_score(world, dict(clip, expressiveness=other["expressiveness"]), wave=other["audio"]))
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))
    assert mean(matched, "sync_c") > mean(swapped, "sync_c") + 0.3
    assert mean(matched, "sync_d") < mean(swapped, "sync_d")
    assert mean(matched, "expressiveness") > mean(swapped, "expressiveness") + 0.1


def _shift_audio(world, clip, frames):
    cfg = world[0]
    n = int(round(frames * cfg.data.sample_rate / cfg.data.fps))
    wave = np.concatenate([np.zeros(n, np.float32), clip["audio"]])[: len(clip["audio"])]
    return _score(world, clip, wave=wave)


def test_audio_shift_moves_offset_then_breaks_sync(world):
    offsets = _mean_curve(world, lambda c, k: _shift_audio(world, c, k), [0, 2, 4, 8], "abs_offset")
    print("offsets:", offsets)
    assert all(b > a for a, b in zip(offsets, offsets[1:])), offsets
    assert offsets[-1] == pytest.approx(8, abs=1.5)
    # Beyond the offset search window the best distance can no longer be found: confidence drops.
    conf = _mean_curve(world, lambda c, k: _shift_audio(world, c, k), [0, 25, 40], "sync_c")
    _assert_degrades(conf, margin=0.2)


def _swap_actions(clip, count):
    phases = [dict(p) for p in clip["spec"]["phases"]]
    unused = [a for a in ACTION_NAMES if a not in {p["action"] for p in phases}]
    for k in range(min(count, len(phases))):
        phases[k]["action"] = unused[k]
    return perturbed(clip["spec"], phases=phases)


def test_swapping_actions_lowers_hit_rate_and_accuracy(world):
    variant = lambda c, n: _score(world, c, _swap_actions(c, n))
    _assert_degrades(_mean_curve(world, variant, [0, 1, 4], "h_at_s"), margin=0.4)
    _assert_degrades(_mean_curve(world, variant, [0, 1, 4], "aa"), margin=0.4)


def _move_windows(clip, delta):
    duration = clip["spec"]["duration"]
    phases = []
    for p in clip["spec"]["phases"]:  # shift later; a phase pushed (almost) out of the clip is dropped
        if p["start"] + delta < duration - 0.3:
            phases.append(dict(p, start=p["start"] + delta, end=min(p["end"] + delta, duration)))
    return perturbed(clip["spec"], phases=phases)


def test_moving_phase_windows_lowers_temporal_correctness(world):
    variant = lambda c, d: _score(world, c, _move_windows(c, d))
    _assert_degrades(_mean_curve(world, variant, [0.0, 0.2, 0.5, 1.0], "tc"), margin=0.2)


def test_swapping_identity_lowers_identity_similarity(world):
    _, _, clips = world
    # Each clip's identity is blended towards the next test clip's (a held-out identity too).
    partner = {id(c): clips[(i + 1) % len(clips)]["spec"]["identity"] for i, c in enumerate(clips)}
    variant = lambda c, a: _score(world, c, perturbed(c["spec"], identity=interpolate_identity(
        c["spec"]["identity"], partner[id(c)], a)))
    _assert_degrades(_mean_curve(world, variant, [0.0, 0.25, 0.5, 0.75, 1.0], "csim"), margin=0.3)
