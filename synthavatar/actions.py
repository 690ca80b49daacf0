"""SynthAvatar action library: 14 timed actions with parametric joint trajectories and paraphrases.

Each action is what one ActAvatar phase block asks for ("Phase-1 [0.0s–2.0s]: waves hello"). An action
returns absolute targets for the pose channels it controls as a function of time inside its window; the
motion composer (motion.py) blends them over the idle pose with a smooth envelope. Every action has at
least four paraphrases; the last one is reserved for the test split (unseen wording). Trade-off:
hand-written trajectories are exact ground truth and cheap, but far less varied than human motion.

Angles follow the 2D arm model of render.py: 0 = upper arm hanging down, pi = straight up, positive =
away from the body; the forearm angle is shoulder + elbow, negative elbow folds the forearm across the
chest. Hand shapes: see HAND_SHAPES.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HAND_SHAPES = ("open", "fist", "thumb_up", "point", "palm_out")
HAND = {name: i for i, name in enumerate(HAND_SHAPES)}
IDLE_LABEL = 0  # per-frame action label for "no requested action"

TargetFn = Callable[[np.ndarray, dict], dict]


@dataclass(frozen=True)
class Action:
    name: str
    paraphrases: tuple[str, ...]
    targets: TargetFn  # (t seconds since window start (T,), params) -> {channel: (T,) target}

    @property
    def train_paraphrases(self) -> tuple[str, ...]:
        return self.paraphrases[:-1]

    @property
    def test_paraphrases(self) -> tuple[str, ...]:
        return self.paraphrases[-1:]


def _const(t, value):
    return np.full_like(t, value, dtype=np.float64)


def _osc(t, p, centre, amp, hz):
    """Oscillation with per-clip amplitude/frequency jitter (p['amp'], p['speed'])."""
    return centre + amp * p["amp"] * np.sin(2 * np.pi * hz * p["speed"] * t)


def _raise(side):
    return lambda t, p: {f"{side}_sh": _const(t, 2.55 * p["amp"] ** 0.1), f"{side}_el": _const(t, 0.35),
                         f"{side}_wr": _const(t, 0.1), f"{side}_hand": _const(t, HAND["open"])}


def _wave(t, p):
    return {"r_sh": _const(t, 1.5), "r_el": _osc(t, p, 1.25, 0.45, 2.5), "r_wr": _osc(t, p, 0.0, 0.2, 2.5),
            "r_hand": _const(t, HAND["open"])}


def _point_down(t, p):
    return {"r_sh": _const(t, 0.75), "r_el": _const(t, -0.05), "r_wr": _const(t, 0.0),
            "r_hand": _const(t, HAND["point"])}


def _palms_outward(t, p):
    out = {}
    for side in ("r", "l"):
        out.update({f"{side}_sh": _const(t, 0.55), f"{side}_el": _const(t, 1.85),
                    f"{side}_wr": _const(t, 0.2), f"{side}_hand": _const(t, HAND["palm_out"])})
    return out


def _cross_arms(t, p):
    return {"r_sh": _const(t, 0.35), "r_el": _const(t, -2.25), "r_wr": _const(t, 0.0),
            "l_sh": _const(t, 0.42), "l_el": _const(t, -2.15), "l_wr": _const(t, 0.0),
            "r_hand": _const(t, HAND["fist"]), "l_hand": _const(t, HAND["fist"])}


def _clap(t, p):
    # Forearms swing inwards and back; the hands meet in front of the chest at the inner extreme.
    elbow = -1.75 - 0.35 * p["amp"] * (0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * p["speed"] * t))
    return {"r_sh": _const(t, 0.5), "l_sh": _const(t, 0.5), "r_el": elbow, "l_el": elbow,
            "r_wr": _const(t, -0.3), "l_wr": _const(t, -0.3),
            "r_hand": _const(t, HAND["open"]), "l_hand": _const(t, HAND["open"])}


def _thumbs_up(t, p):
    return {"r_sh": _const(t, 0.3), "r_el": _const(t, 2.45), "r_wr": _const(t, 0.0),
            "r_hand": _const(t, HAND["thumb_up"])}


def _hand_on_chest(t, p):
    return {"r_sh": _const(t, 0.3), "r_el": _const(t, -1.9), "r_wr": _const(t, -0.3),
            "r_hand": _const(t, HAND["open"])}


def _nod(t, p):
    return {"head_pitch": _osc(t, p, 0.05, 0.3, 1.8)}


def _shake_head(t, p):
    return {"head_yaw": _osc(t, p, 0.0, 0.55, 2.0)}


def _tilt_head(t, p):
    return {"head_roll": _const(t, 0.32 * p["side"] * p["amp"])}


def _look(direction):
    return lambda t, p: {"gaze_x": _const(t, 0.95 * direction), "head_yaw": _const(t, 0.22 * direction)}


# Paraphrase lists: the last entry of each is held out for the test split.
ACTIONS: tuple[Action, ...] = (
    Action("raise_left_hand", ("raises the left hand", "lifts the left hand up high",
                               "puts the left hand up", "holds the left arm up in the air"), _raise("l")),
    Action("raise_right_hand", ("raises the right hand", "lifts the right hand up high",
                                "puts the right hand up", "holds the right arm up in the air"), _raise("r")),
    Action("wave", ("waves hello", "waves at the camera", "gives a friendly wave",
                    "waves a hand in greeting"), _wave),
    Action("point_down", ("points down", "points downward to emphasise a detail",
                          "points at the floor", "directs a finger towards the ground"), _point_down),
    Action("palms_outward", ("gestures with palms facing outward", "shows both open palms",
                             "holds both palms out", "opens both hands towards the viewer"), _palms_outward),
    Action("cross_arms", ("crosses the arms", "folds the arms across the chest",
                          "stands with arms crossed", "wraps the arms over the chest"), _cross_arms),
    Action("clap", ("claps", "claps the hands together", "gives a round of applause",
                    "applauds with both hands"), _clap),
    Action("thumbs_up", ("gives a thumbs up", "shows a thumbs up", "raises a thumb in approval",
                         "signals approval with a raised thumb"), _thumbs_up),
    Action("hand_on_chest", ("puts a hand on the chest", "places the right hand over the heart",
                             "rests a hand on the chest", "lays a palm against the chest"), _hand_on_chest),
    Action("nod", ("nods", "nods in agreement", "nods the head", "bobs the head up and down"), _nod),
    Action("shake_head", ("shakes the head", "shakes the head no", "turns the head from side to side",
                          "gives a disapproving head shake"), _shake_head),
    Action("tilt_head", ("tilts the head", "tilts the head to one side", "cocks the head",
                         "leans the head sideways"), _tilt_head),
    Action("look_left", ("looks to the left", "glances left", "turns the eyes to the left",
                         "shifts the gaze leftward"), _look(1.0)),
    Action("look_right", ("looks to the right", "glances right", "turns the eyes to the right",
                          "shifts the gaze rightward"), _look(-1.0)),
)
ACTION_NAMES = tuple(a.name for a in ACTIONS)
ACTION_BY_NAME = {a.name: a for a in ACTIONS}
# Per-frame labels: 0 = idle, 1..N = ACTIONS[i - 1].
ACTION_LABEL = {name: i + 1 for i, name in enumerate(ACTION_NAMES)}
NUM_LABELS = len(ACTIONS) + 1


def sample_action_params(rng: np.random.Generator) -> dict:
    """Per-occurrence variation: amplitude, speed and side (for tilt) so no two clips move alike."""
    return {"amp": float(rng.uniform(0.8, 1.15)), "speed": float(rng.uniform(0.85, 1.2)),
            "side": float(rng.choice([-1.0, 1.0]))}
