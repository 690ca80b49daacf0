"""Per-frame pose of a SynthAvatar clip: idle motion + timed actions + speech-coupled gestures.

The pose is a dict of float64 arrays of shape (T,), one per channel (POSE_CHANNELS). Idle motion
(breathing, blinks, small sway, gaze saccades) runs everywhere; speech drives the mouth (from the audio
ground truth) and small beat gestures/brow raises at emphasis peaks, which is the expressiveness signal
SyncDreamer's audio dynamics encoder is meant to capture. Each phase's action is blended in with a
smooth envelope (ramps of RAMP_S) inside its window. Trade-off: the blend is channel-wise, so two actions
never fight over a channel only because the sampler never overlaps phase windows.
"""
from __future__ import annotations

import numpy as np

from synthavatar.actions import ACTION_BY_NAME, ACTION_LABEL, HAND, IDLE_LABEL

POSE_CHANNELS = ("torso_x", "breath", "head_yaw", "head_pitch", "head_roll", "gaze_x", "gaze_y", "blink",
                 "brow", "mouth_open", "viseme", "r_sh", "r_el", "r_wr", "r_hand",
                 "l_sh", "l_el", "l_wr", "l_hand")
DISCRETE_CHANNELS = ("viseme", "r_hand", "l_hand")
RAMP_S = 0.2  # seconds to move into / out of an action pose


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Time of each frame's centre, the convention shared with the audio ground truth."""
    return (np.arange(num_frames) + 0.5) / fps


def _smooth_noise(rng, t, hz, amp):
    """Sum of a few random low-frequency sinusoids: cheap, smooth, deterministic sway."""
    out = np.zeros_like(t)
    for _ in range(3):
        f = hz * rng.uniform(0.5, 1.5)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return amp * out / 3


def _blinks(rng, t):
    blink = np.zeros_like(t)
    when = rng.uniform(0.2, 1.5)
    while when < t[-1] + 1:
        blink = np.maximum(blink, np.clip(1 - np.abs(t - when) / 0.08, 0, 1))
        when += rng.uniform(1.8, 4.5)
    return blink


def _saccades(rng, t, amp):
    """Piecewise-constant small gaze shifts every 0.5-2 s."""
    out = np.zeros_like(t)
    start = 0.0
    while start < t[-1]:
        dur = rng.uniform(0.5, 2.0)
        out[(t >= start) & (t < start + dur)] = rng.uniform(-amp, amp)
        start += dur
    return out


def _beats(t, peaks, stresses, width=0.12):
    """Gaussian bumps at the speech emphasis peaks, height = stress: the beat-gesture driver (T,)."""
    out = np.zeros_like(t)
    for peak, stress in zip(peaks, stresses):
        out += stress * np.exp(-0.5 * ((t - peak) / width) ** 2)
    return np.clip(out, 0, 1.5)


def idle_pose(rng: np.random.Generator, t: np.ndarray, beat: np.ndarray) -> dict:
    """Idle channels: arms hanging with sway, breathing, blinks, gaze saccades, beat gestures."""
    beat_side = "r" if rng.random() < 0.6 else "l"
    pose = {
        "torso_x": _smooth_noise(rng, t, 0.3, 0.012),
        "breath": 0.012 * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * t + rng.uniform(0, 6.3)),
        "head_yaw": _smooth_noise(rng, t, 0.25, 0.05),
        "head_pitch": _smooth_noise(rng, t, 0.25, 0.03) - 0.08 * beat,  # micro-nod on emphasis
        "head_roll": _smooth_noise(rng, t, 0.2, 0.03),
        "gaze_x": _saccades(rng, t, 0.2), "gaze_y": _saccades(rng, t, 0.1),
        "blink": _blinks(rng, t), "brow": 0.6 * beat,
        "mouth_open": np.zeros_like(t), "viseme": np.zeros_like(t),
    }
    for side in ("r", "l"):
        gesture = 0.9 * beat if side == beat_side else 0.2 * beat
        pose[f"{side}_sh"] = 0.14 + _smooth_noise(rng, t, 0.3, 0.03) + 0.15 * gesture
        pose[f"{side}_el"] = 0.12 + _smooth_noise(rng, t, 0.3, 0.04) + 0.9 * gesture
        pose[f"{side}_wr"] = 0.05 + 0.3 * gesture
        pose[f"{side}_hand"] = np.full_like(t, HAND["open"])
    return pose


def envelope(t: np.ndarray, start: float, end: float, ramp: float = RAMP_S) -> np.ndarray:
    """0 outside [start, end], smoothstep ramps of `ramp` seconds inside, 1 in the middle (T,)."""
    ramp = min(ramp, 0.25 * (end - start))
    x = np.clip(np.minimum(t - start, end - t) / ramp, 0, 1)
    return x * x * (3 - 2 * x)


def apply_action(pose: dict, t: np.ndarray, name: str, start: float, end: float, params: dict) -> None:
    """Blend one action's targets into `pose` in place over its window."""
    env = envelope(t, start, end)
    inside = env > 0
    targets = ACTION_BY_NAME[name].targets(t - start, params)
    for channel, target in targets.items():
        if channel.endswith("_hand"):  # discrete: switch half-way through the ramp
            pose[channel] = np.where(env > 0.5, target, pose[channel])
        else:
            pose[channel] = np.where(inside, (1 - env) * pose[channel] + env * target, pose[channel])


def compose_pose(seed: int, num_frames: int, fps: float, phases: list[dict], audio_gt: dict,
                 emphasis_peaks: list[float], peak_stress: list[float]) -> dict:
    """Full pose (dict of (T,) arrays) for a clip. `phases`: dicts with action, start, end, params."""
    rng = np.random.default_rng(seed)
    t = frame_times(num_frames, fps)
    beat = _beats(t, emphasis_peaks, peak_stress)
    pose = idle_pose(rng, t, beat)
    pose["mouth_open"] = np.asarray(audio_gt["mouth_open"], np.float64)
    pose["viseme"] = np.asarray(audio_gt["viseme"], np.float64)
    for phase in phases:
        apply_action(pose, t, phase["action"], phase["start"], phase["end"], phase["params"])
    return pose


def action_labels(num_frames: int, fps: float, phases: list[dict]) -> np.ndarray:
    """Per-frame ground-truth action label (int64 (T,)): the phase whose window holds the frame centre."""
    t = frame_times(num_frames, fps)
    labels = np.full(num_frames, IDLE_LABEL, np.int64)
    for phase in phases:
        labels[(t >= phase["start"]) & (t < phase["end"])] = ACTION_LABEL[phase["action"]]
    return labels
