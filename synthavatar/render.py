"""Anti-aliased 2D renderer of a SynthAvatar clip: identity + per-frame pose -> video, joints, masks.

Every part is a signed distance function (circles, ellipses, capsules, rounded boxes) evaluated on the
pixel grid for all frames at once (arrays of shape (T, H, W)); coverage = clip(0.5 - sdf / pixel, 0, 1)
gives one-pixel anti-aliasing, so sub-pixel motions (a 1 px head nod at 64x64) still change pixel values.
Canvas units: x, y in [0, 1], y pointing down; the avatar's right arm is on the viewer's left.
Trade-off: numpy SDFs are simple and exact but cost O(parts x T x H x W); 64x64 clips render in a
fraction of a second, 256x256 in seconds.
"""
from __future__ import annotations

import numpy as np

JOINTS = ("head", "neck", "r_shoulder", "r_elbow", "r_wrist", "r_hand", "l_shoulder", "l_elbow",
          "l_wrist", "l_hand", "chest")
REGIONS = ("eyes", "mouth", "hair", "face", "hands")
UPPER_ARM, FOREARM, HAND_LEN = 0.17, 0.15, 0.045
SHOULDER_Y, HEAD_Y = 0.53, 0.30
# Mouth (half-width, closed half-height, opening gain) per viseme: closed, open, wide, round.
VISEME_SHAPES = np.array([[0.030, 0.003, 0.006], [0.030, 0.004, 0.034],
                          [0.041, 0.003, 0.018], [0.019, 0.006, 0.026]], np.float32)
MOUTH_INNER = np.array([0.25, 0.04, 0.07], np.float32)
EYE_WHITE = np.array([0.97, 0.97, 0.97], np.float32)


def _f(v):
    """Per-frame parameter (T,) -> (T, 1, 1) so it broadcasts against the (1, H, W) grid."""
    return np.asarray(v, np.float32)[:, None, None]


def sd_circle(x, y, cx, cy, r):
    return np.hypot(x - cx, y - cy) - r


def sd_ellipse(x, y, cx, cy, rx, ry):
    """First-order ellipse distance: (k - 1) / |grad k| with k the normalised radius."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    k = np.hypot(dx, dy)
    grad = np.hypot(dx / rx, dy / ry) / np.maximum(k, 1e-6)
    return (k - 1) / np.maximum(grad, 1e-6)


def sd_segment(x, y, ax, ay, bx, by, r):
    pax, pay, bax, bay = x - ax, y - ay, bx - ax, by - ay
    h = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0, 1)
    return np.hypot(pax - bax * h, pay - bay * h) - r


def sd_box(x, y, cx, cy, hw, hh, r):
    qx, qy = np.abs(x - cx) - hw + r, np.abs(y - cy) - hh + r
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


class Canvas:
    """Pixel grid + painter's-algorithm compositing for T frames."""

    def __init__(self, num_frames: int, size: int, background: np.ndarray):
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.x, self.y = centres[None, None, :], centres[None, :, None]  # (1, 1, W), (1, H, 1)
        self.pixel = 1.0 / size
        self.img = np.broadcast_to(background, (num_frames, size, size, 3)).copy()

    def cover(self, sdf):
        return np.clip(0.5 - sdf / self.pixel, 0.0, 1.0).astype(np.float32)

    def paint(self, coverage, colour):
        colour = np.asarray(colour, np.float32)
        self.img += coverage[..., None] * (colour - self.img)


def background_image(identity: dict, size: int) -> np.ndarray:
    """Static background (H, W, 3): plain, stripes, checker, dots or gradient."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = c[None, :], c[:, None]
    a, b = np.asarray(identity["bg_a"], np.float32), np.asarray(identity["bg_b"], np.float32)
    f, px = identity["bg_scale"], 1.0 / size
    kind = identity["background"]
    if kind == "plain":
        mix = np.zeros((size, size), np.float32)
    elif kind == "gradient":
        mix = np.broadcast_to(y, (size, size)) * 0.9
    elif kind == "stripes":  # anti-aliased diagonal stripes
        s = np.sin(2 * np.pi * f * (x + y) / 2)
        mix = np.clip(0.5 + s / (2 * np.pi * f * px), 0, 1)
    elif kind == "checker":
        s = np.sin(np.pi * f * x) * np.sin(np.pi * f * y)
        mix = np.clip(0.5 + s / (np.pi * f * px), 0, 1)
    else:  # dots on a lattice
        gx, gy = (x * f) % 1 - 0.5, (y * f) % 1 - 0.5
        mix = np.clip(0.5 - (np.hypot(gx, gy) - 0.22) / (f * px), 0, 1)
    return (a * (1 - mix[..., None]) + b * mix[..., None]).astype(np.float32)


def arm_chain(pose: dict, side: str, shoulder_x: np.ndarray, shoulder_y: np.ndarray):
    """2D forward kinematics -> dict of (T,) x/y for shoulder, elbow, wrist, hand tip, and hand angle."""
    out_dir = -1.0 if side == "r" else 1.0  # outward = away from the body's midline
    a1 = pose[f"{side}_sh"]
    a2 = a1 + pose[f"{side}_el"]
    a3 = a2 + pose[f"{side}_wr"]
    ex, ey = shoulder_x + out_dir * UPPER_ARM * np.sin(a1), shoulder_y + UPPER_ARM * np.cos(a1)
    wx, wy = ex + out_dir * FOREARM * np.sin(a2), ey + FOREARM * np.cos(a2)
    hx, hy = wx + out_dir * HAND_LEN * np.sin(a3), wy + HAND_LEN * np.cos(a3)
    return {"shoulder": (shoulder_x, shoulder_y), "elbow": (ex, ey), "wrist": (wx, wy), "hand": (hx, hy)}


def layout(identity: dict, pose: dict) -> dict:
    """Per-frame positions of the body parts in canvas units, all (T,) arrays."""
    cx = 0.5 + pose["torso_x"]
    head_x = cx + 0.1 * identity["head_rx"] * pose["head_yaw"]
    head_y = HEAD_Y + 0.03 * pose["head_pitch"] - 0.3 * pose["breath"]
    shoulder_y = SHOULDER_Y - 0.5 * pose["breath"]
    shw = identity["shoulder_half_width"]
    arms = {s: arm_chain(pose, s, cx + (-shw if s == "r" else shw), shoulder_y) for s in ("r", "l")}
    return {"cx": cx, "head": (head_x, head_y), "shoulder_y": shoulder_y, "arms": arms,
            "face": (head_x + 0.6 * identity["head_rx"] * pose["head_yaw"],
                     head_y + 0.5 * identity["head_ry"] * pose["head_pitch"])}


def joints_of(lay: dict, size: int) -> np.ndarray:
    """Joint positions in pixels, float32 (T, len(JOINTS), 2) as (x, y)."""
    arms = lay["arms"]
    pts = [lay["head"], (lay["head"][0], lay["shoulder_y"] - 0.04)]
    for side in ("r", "l"):
        pts += [arms[side][k] for k in ("shoulder", "elbow", "wrist", "hand")]
    pts.append((lay["cx"], lay["shoulder_y"] + 0.12))
    xy = np.stack([np.stack(np.broadcast_arrays(x, y), -1) for x, y in pts], 1)
    return (xy * size).astype(np.float32)
