"""SynthAvatar world: rendering, actions, ground truth and split invariants (fast, no probe)."""
import numpy as np
import pytest

from models import prompt as prompts
from synthavatar.actions import ACTION_LABEL, ACTIONS
from synthavatar.clip import perturbed, render_clip, sample_clip_spec, sample_windows
from synthavatar.identity import HAIR_STYLES, interpolate_identity, sample_identity
from synthavatar.render import JOINTS, REGIONS
from synthavatar.splits import HELD_OUT_LOOKS, TRAIN_LOOKS, has_held_out_pair


def spec_for(split="train", index=0, duration=2.0):
    return sample_clip_spec(np.random.SeedSequence([7, index]), split, duration)


def test_actions_library_is_rich_enough():
    assert len(ACTIONS) >= 12
    for action in ACTIONS:
        assert len(set(action.paraphrases)) == len(action.paraphrases) >= 4
        assert not set(action.test_paraphrases) & set(action.train_paraphrases)


def test_render_is_deterministic_and_shapes_match():
    spec = spec_for()
    a, b = render_clip(spec, 64, 25), render_clip(spec, 64, 25)
    assert np.array_equal(a["video"], b["video"]) and np.array_equal(a["audio"], b["audio"])
    T = 50
    assert a["video"].shape == (T, 64, 64, 3) and a["video"].dtype == np.uint8
    assert a["joints"].shape == (T, len(JOINTS), 2)
    assert a["masks"].shape == (T, len(REGIONS), 64, 64)
    assert a["audio"].shape == (32000,)
    assert prompts.from_text(a["prompt_text"], duration=2.0).phases  # renders and re-parses


@pytest.mark.parametrize("size", [128, 256])
def test_higher_resolutions_scale_joints(size):
    spec = perturbed(spec_for(duration=0.4))
    small, big = render_clip(spec, 64, 25), render_clip(spec, size, 25)
    assert big["video"].shape[1:3] == (size, size)
    np.testing.assert_allclose(big["joints"] / size, small["joints"] / 64, atol=1e-5)


def test_anti_aliasing_makes_subpixel_motion_visible():
    spec = spec_for()
    clip = render_clip(spec, 64, 25)
    nudged = perturbed(spec, identity=dict(spec["identity"], head_rx=spec["identity"]["head_rx"] + 0.002))
    diff = np.abs(render_clip(nudged, 64, 25)["video"].astype(int) - clip["video"].astype(int))
    assert diff.max() > 0  # a 0.13-pixel change of the head width still changes pixels


def _with_phase(spec, action, start, end):
    phase = {"action": action, "start": start, "end": end, "text": "x",
             "params": {"amp": 1.0, "speed": 1.0, "side": 1.0}}
    return perturbed(spec, phases=[phase])


def test_raise_left_hand_moves_left_wrist_above_shoulder_only_inside_window():
    spec = _with_phase(spec_for(duration=3.0), "raise_left_hand", 1.0, 2.0)
    clip = render_clip(spec, 64, 25)
    j = {n: clip["joints"][:, i] for i, n in enumerate(JOINTS)}
    inside, outside = slice(35, 45), slice(0, 20)
    assert (j["l_wrist"][inside, 1] < j["l_shoulder"][inside, 1]).all()  # y down: above = smaller y
    assert (j["l_wrist"][outside, 1] > j["l_shoulder"][outside, 1]).all()
    labels = clip["action_label"]
    assert (labels[25:50] == ACTION_LABEL["raise_left_hand"]).all() and (labels[:25] == 0).all()


def test_masks_cover_their_parts():
    spec = spec_for()
    clip = render_clip(perturbed(spec, identity=dict(spec["identity"], hair_style="long")), 64, 25)
    masks = dict(zip(REGIONS, clip["masks"].transpose(1, 0, 2, 3)))
    head = clip["joints"][:, JOINTS.index("head")]
    for t in (0, 25):
        x, y = head[t].astype(int)
        assert masks["face"][t, y, x]
        assert masks["mouth"][t].sum() > 0 and masks["eyes"][t].sum() > 0 and masks["hands"][t].sum() > 0
        assert not (masks["mouth"][t] & masks["hands"][t]).all()
        assert not (masks["hair"][t] & masks["mouth"][t]).any()  # hidden hair is not in the hair mask


def test_mouth_mask_region_tracks_mouth_opening():
    clip = render_clip(spec_for(duration=4.0), 64, 25)
    dark = (clip["video"].astype(int).sum(-1) < 200) & clip["masks"][:, REGIONS.index("mouth")]
    r = np.corrcoef(dark.sum((1, 2)), clip["mouth_open"])[0, 1]
    assert r > 0.6, r


def test_splits_hold_out_looks_pairs_and_paraphrases():
    train = [spec_for("train", i, 4.0) for i in range(30)]
    test = [spec_for("test", i, 4.0) for i in range(30)]
    train_texts = {p["text"] for s in train for p in s["phases"]}
    for s in train:
        assert not has_held_out_pair([p["action"] for p in s["phases"]])
        assert (s["identity"]["hair_style"], s["identity"]["clothes_style"]) in TRAIN_LOOKS
    for s in test:
        assert len(s["phases"]) >= 2 and has_held_out_pair([p["action"] for p in s["phases"]])
        assert (s["identity"]["hair_style"], s["identity"]["clothes_style"]) in HELD_OUT_LOOKS
        assert not {p["text"] for p in s["phases"]} & train_texts


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_sampled_windows_are_valid(count):
    rng = np.random.default_rng(count)
    for _ in range(50):
        windows = sample_windows(rng, 4.0, count)
        assert len(windows) == count
        for (s, e), nxt in zip(windows, windows[1:] + [(4.0, 4.0)]):
            assert 0 <= s < e <= nxt[0] + 1e-9 and e - s >= 0.5


def test_identity_interpolation_endpoints():
    rng = np.random.default_rng(0)
    a, b = sample_identity(rng), sample_identity(rng)
    assert interpolate_identity(a, b, 0.0) == a
    assert interpolate_identity(a, b, 1.0)["skin"] == pytest.approx(b["skin"])
    assert interpolate_identity(a, b, 1.0)["hair_style"] == b["hair_style"] in HAIR_STYLES


def test_test_split_specs_do_not_depend_on_the_hash_seed():
    """Clips are a pure function of (seed, split, index), also across processes with other hash seeds."""
    import os
    import subprocess
    import sys
    code = ("import json, numpy as np; from synthavatar.clip import sample_clip_spec; "
            "print(json.dumps([sample_clip_spec(np.random.SeedSequence([0, 2, i]), 'test', 4.0)['phases'] "
            "for i in range(6)]))")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo,
                           env=os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": repo}).stdout
            for seed in ("1", "2", "3")}
    assert len(outs) == 1
