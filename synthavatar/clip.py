"""One SynthAvatar clip: a JSON-serialisable spec, and its rendering to video + audio + ground truth.

A spec holds everything that decides a clip (identity, mood, phases with action/paraphrase/window/
parameters, the audio syllable schedule, motion and audio seeds); `render_clip` is a pure function of
(spec, resolution, fps, sample rate). That makes perturbations exact: change one field (shift a phase
window, swap an action, blend the identity) and everything else in the video stays the same, which is
what the metric sanity tests rely on. The prompt is the ActAvatar structured prompt (models/prompt/) with
its flat global and brief renderings.
"""
from __future__ import annotations

import copy

import numpy as np

from models import prompt as prompts
from synthavatar import audio
from synthavatar.actions import ACTION_BY_NAME, sample_action_params
from synthavatar.avatar import render_avatar
from synthavatar.identity import describe_identity, describe_scene, sample_identity
from synthavatar.motion import action_labels, compose_pose
from synthavatar.splits import looks_for, paraphrase_pool, sample_actions

MOODS = ("calm", "cheerful", "serious", "enthusiastic", "friendly")
MIN_PHASE_S = 0.8


def _round(x: float) -> float:
    return float(np.round(x, 1))  # windows on a 0.1 s grid render exactly in the text prompt


def sample_windows(rng: np.random.Generator, duration: float, count: int) -> list[tuple[float, float]]:
    """`count` ordered, non-overlapping windows of >= MIN_PHASE_S s, with optional idle gaps."""
    count = max(1, min(count, int(duration // MIN_PHASE_S)))
    gaps = rng.uniform(0.0, 0.4, count + 1) * (rng.random(count + 1) < 0.5)
    free = duration - gaps.sum() - count * MIN_PHASE_S
    if free < 0:
        gaps[:] = 0
        free = duration - count * MIN_PHASE_S
    lengths = MIN_PHASE_S + free * rng.dirichlet(np.ones(count + 1))[:count]
    windows, t = [], 0.0
    for gap, length in zip(gaps, lengths):
        start = _round(t + gap)
        end = min(_round(start + length), _round(duration))
        windows.append((start, end))
        t = end
    return windows


def sample_clip_spec(seed_seq: np.random.SeedSequence, split: str, duration: float,
                     min_phases: int = 1, max_phases: int = 4) -> dict:
    """Draw a clip spec for `split` obeying its held-out rules (splits.py)."""
    rng = np.random.default_rng(seed_seq)
    hair, clothes = looks_for(split)[int(rng.integers(len(looks_for(split))))]
    identity = sample_identity(rng, hair_style=hair, clothes_style=clothes)
    count = int(rng.integers(min_phases, max_phases + 1))
    windows = sample_windows(rng, duration, count)
    actions = sample_actions(rng, split, len(windows))
    windows = sample_windows(rng, duration, len(actions)) if len(actions) != len(windows) else windows
    phases = []
    for name, (start, end) in zip(actions, windows):
        pool = paraphrase_pool(ACTION_BY_NAME[name], split)
        phases.append({"action": name, "start": start, "end": end,
                       "text": pool[int(rng.integers(len(pool)))], "params": sample_action_params(rng)})
    mood = MOODS[int(rng.integers(len(MOODS)))]
    rate = {"calm": 0.9, "enthusiastic": 1.15, "cheerful": 1.05}.get(mood, 1.0)
    schedule = audio.sample_schedule(rng, duration, speech_rate=rate)
    return {"identity": identity, "mood": mood, "duration": float(duration), "phases": phases,
            "audio": schedule.to_dict(), "motion_seed": int(rng.integers(2**31)),
            "audio_seed": int(rng.integers(2**31))}


def prompt_of(spec: dict) -> prompts.StructuredPrompt:
    base = " ".join([describe_identity(spec["identity"]), describe_scene(spec["identity"]),
                     f"They speak in a {spec['mood']} manner."])
    phases = tuple(prompts.Phase(p["start"], p["end"], p["text"], p["action"]) for p in spec["phases"])
    return prompts.validate(prompts.StructuredPrompt(base, phases, spec["duration"]), source="clip spec")


def num_frames_of(spec: dict, fps: float) -> int:
    return int(round(spec["duration"] * fps))


def clip_pose(spec: dict, fps: float, schedule: audio.AudioSchedule | None = None) -> tuple[dict, dict]:
    """Per-frame pose (motion.POSE_CHANNELS) and audio ground truth of a spec, without rendering."""
    schedule = schedule or audio.AudioSchedule.from_dict(spec["audio"])
    T = num_frames_of(spec, fps)
    audio_gt = audio.frame_ground_truth(schedule, fps, T)
    stressed = [s for s in schedule.syllables if s.stress >= 0.75]
    pose = compose_pose(spec["motion_seed"], T, fps, spec["phases"], audio_gt,
                        [s.centre for s in stressed], [s.stress for s in stressed])
    return pose, audio_gt


def render_clip(spec: dict, resolution: int = 64, fps: float = 25, sample_rate: int = audio.SAMPLE_RATE) -> dict:
    """Render a spec -> dict of arrays (video, audio, ground truth) and the prompt renderings."""
    schedule = audio.AudioSchedule.from_dict(spec["audio"])
    pose, audio_gt = clip_pose(spec, fps, schedule)
    T = len(audio_gt["mouth_open"])
    video, joints, masks = render_avatar(spec["identity"], pose, resolution)
    prompt = prompt_of(spec)
    return {
        "video": video, "audio": audio.synthesize(schedule, sample_rate, seed=spec["audio_seed"]),
        "joints": joints, "masks": masks,
        "mouth_open": audio_gt["mouth_open"], "viseme": audio_gt["viseme"],
        "expressiveness": audio_gt["expressiveness"], "speaking": audio_gt["speaking"],
        "gaze": np.stack([pose["gaze_x"], pose["gaze_y"]], 1).astype(np.float32),
        "head": np.stack([pose["head_yaw"], pose["head_pitch"], pose["head_roll"]], 1).astype(np.float32),
        "blink": pose["blink"].astype(np.float32),
        "action_label": action_labels(T, fps, spec["phases"]),
        "prompt": prompts.to_json(prompt), "prompt_text": prompts.to_text(prompt),
        "prompt_global": prompts.to_global(prompt), "prompt_brief": prompts.to_brief(prompt),
    }


def perturbed(spec: dict, **changes) -> dict:
    """Deep copy of a spec with top-level fields replaced (used by the sanity tests and evaluation)."""
    out = copy.deepcopy(spec)
    out.update(copy.deepcopy(changes))
    return out
