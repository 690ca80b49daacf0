"""Draws the SynthAvatar body parts (render.py primitives) and returns video, joints and region masks.

Painter's order: background, long hair, torso and clothes, neck, ears, head, face (eyes with gaze and
blinks, brows, nose, mouth with viseme shape and opening), hair cap, arms, hands. The head is drawn in
head-local coordinates rotated by the roll angle around the neck so a head tilt moves every face part.
Region masks (eyes, mouth, hair, face/jaw, hands) are part coverages > 0.5 and ignore occlusion; they are
the spatial prior of SyncDreamer's attention-localisation loss. Trade-off: hand shapes are switched per
frame by evaluating every shape present in the clip (cheap at 64x64, the cost grows with resolution).
"""
from __future__ import annotations

import numpy as np

from synthavatar.actions import HAND
from synthavatar.render import (
    EYE_WHITE,
    MOUTH_INNER,
    REGIONS,
    VISEME_SHAPES,
    Canvas,
    _f,
    background_image,
    joints_of,
    layout,
    sd_box,
    sd_circle,
    sd_ellipse,
    sd_segment,
)


def _rgb(v, scale=1.0):
    return np.clip(np.asarray(v, np.float32) * scale, 0, 1)


def _head_coords(cv: Canvas, lay: dict, identity: dict, roll: np.ndarray):
    """Grid coordinates rotated by -roll around the neck point: (xl, yl), each (T, H, W)."""
    hx, hy = _f(lay["head"][0]), _f(lay["head"][1])
    px, py = hx, hy + identity["head_ry"]
    c, s = _f(np.cos(roll)), _f(np.sin(roll))
    dx, dy = cv.x - px, cv.y - py
    return px + c * dx + s * dy, py - s * dx + c * dy


def draw_body(cv: Canvas, identity: dict, lay: dict) -> None:
    cx, sy = _f(lay["cx"]), _f(lay["shoulder_y"])
    shw = identity["shoulder_half_width"]
    clothes = _rgb(identity["clothes"])
    torso = sd_box(cv.x, cv.y, cx, sy + 0.3, shw + 0.015, 0.32, 0.07)
    cv.paint(cv.cover(torso), clothes)
    style = identity["clothes_style"]
    if style == "striped":
        stripes = np.clip(0.5 + np.sin(2 * np.pi * 14 * cv.y) / (2 * np.pi * 14 * cv.pixel), 0, 1)
        cv.paint(cv.cover(torso) * stripes, _rgb(identity["clothes"], 0.6))
    elif style == "collared":
        for d in (-1, 1):
            cv.paint(cv.cover(sd_segment(cv.x, cv.y, cx + d * 0.04, sy - 0.015, cx + d * 0.008, sy + 0.04,
                                         0.011)), (0.96, 0.96, 0.96))
    elif style == "v-neck":
        cv.paint(cv.cover(sd_segment(cv.x, cv.y, cx, sy - 0.02, cx, sy + 0.035, 0.018)), _rgb(identity["skin"]))
    neck = sd_segment(cv.x, cv.y, _f(lay["head"][0]), _f(lay["head"][1]) + 0.1, cx, sy - 0.01, 0.034)
    cv.paint(cv.cover(neck), _rgb(identity["skin"], 0.92))


def hair_sdf(identity: dict, xl, yl, hx, hy):
    """Signed distance of the hair cap (+ bun / curls), in head-local coordinates."""
    rx, ry, vol = identity["head_rx"], identity["head_ry"], identity["hair_volume"]
    style = identity["hair_style"]
    grow = 1.01 if style == "buzz" else 1.06 + 0.06 * vol
    hairline = hy - ry * (0.6 if style == "buzz" else 0.35)
    cap = np.maximum(sd_ellipse(xl, yl, hx, hy - 0.01, rx * grow, ry * grow), yl - hairline)
    if style == "bun":
        cap = np.minimum(cap, sd_circle(xl, yl, hx, hy - ry * 1.08, 0.042))
    elif style == "curly":
        for ang in np.linspace(-2.6, -0.55, 5):
            cap = np.minimum(cap, sd_circle(xl, yl, hx + rx * 1.05 * np.cos(ang), hy + ry * 0.95 * np.sin(ang),
                                            0.03 + 0.01 * vol))
    return cap


def draw_head(cv: Canvas, identity: dict, lay: dict, pose: dict) -> dict:
    """Head, face and hair; returns the head-derived region coverages."""
    xl, yl = _head_coords(cv, lay, identity, pose["head_roll"])
    hx, hy = _f(lay["head"][0]), _f(lay["head"][1])
    fx, fy = _f(lay["face"][0]), _f(lay["face"][1])
    rx, ry = identity["head_rx"], identity["head_ry"]
    skin = _rgb(identity["skin"])
    hair_colour = _rgb(identity["hair"])
    hair_cov = np.zeros_like(cv.img[..., 0])
    if identity["hair_style"] == "long":
        back = cv.cover(sd_box(xl, yl, hx, hy + 0.07, rx * 1.12, ry + 0.07, 0.06))
        cv.paint(back, hair_colour)
        hair_cov = np.maximum(hair_cov, back)
    for d in (-1, 1):
        cv.paint(cv.cover(sd_circle(xl, yl, hx + d * rx * 0.97, hy, 0.022)), skin * 0.95)
    face = cv.cover(sd_ellipse(xl, yl, hx, hy, rx, ry))
    cv.paint(face, skin)
    eyes = draw_eyes(cv, identity, pose, xl, yl, fx, fy)
    cv.paint(cv.cover(sd_segment(xl, yl, fx, fy, fx + 0.01 * _f(pose["head_yaw"]), fy + 0.03, 0.005)),
             skin * 0.82)
    mouth = draw_mouth(cv, identity, pose, xl, yl, fx, fy + 0.066)
    cap = cv.cover(hair_sdf(identity, xl, yl, hx, hy))
    cv.paint(cap, hair_colour)
    # Long hair behind the head is hidden by the face: keep only its visible part in the hair mask.
    return {"eyes": eyes, "mouth": mouth, "hair": np.maximum(hair_cov * (1 - face), cap), "face": face}


def draw_eyes(cv, identity, pose, xl, yl, fx, fy):
    """Eye whites (closing with blinks), irises following gaze, brows; returns the eye region."""
    openness = _f(1 - 0.92 * pose["blink"])
    gx, gy = _f(pose["gaze_x"]), _f(pose["gaze_y"])
    region = np.zeros_like(cv.img[..., 0])
    for d in (-1, 1):
        ex, ey = fx + d * identity["eye_spacing"], fy - 0.022
        white = cv.cover(sd_ellipse(xl, yl, ex, ey, 0.02, 0.013 * openness))
        cv.paint(white, EYE_WHITE)
        iris = cv.cover(sd_circle(xl, yl, ex + 0.011 * gx, ey + 0.005 * gy, 0.0085))
        cv.paint(np.minimum(iris, white), _rgb(identity["eyes"]))
        by = ey - 0.026 - 0.012 * _f(pose["brow"])
        brow = sd_segment(xl, yl, ex - d * 0.017, by + 0.003, ex + d * 0.017, by - 0.002, 0.004)
        cv.paint(cv.cover(brow), _rgb(identity["hair"], 0.8))
        region = np.maximum(region, cv.cover(sd_ellipse(xl, yl, ex, ey, 0.03, 0.022)))
    return region


def draw_mouth(cv, identity, pose, xl, yl, mx, my):
    """Lips + dark inner mouth; size from the viseme's shape table and the opening."""
    vis = np.clip(pose["viseme"].astype(int), 0, len(VISEME_SHAPES) - 1)
    w, h0, gain = (_f(VISEME_SHAPES[vis, i]) for i in range(3))
    h = h0 + gain * _f(pose["mouth_open"])
    cv.paint(cv.cover(sd_ellipse(xl, yl, mx, my, w + 0.007, h + 0.006)), _rgb(identity["lips"]))
    cv.paint(cv.cover(sd_ellipse(xl, yl, mx, my, w, h)), MOUTH_INNER)
    return cv.cover(sd_ellipse(xl, yl, mx, my, 0.05, 0.04))


def _hand_sdf(cv, shape: int, wx, wy, hx, hy):
    """Signed distance of one hand shape given wrist and tip positions ((T,1,1) each)."""
    dx, dy = hx - wx, hy - wy
    if shape == HAND["open"]:
        return sd_segment(cv.x, cv.y, wx, wy, hx, hy, 0.022)
    if shape == HAND["palm_out"]:
        return sd_ellipse(cv.x, cv.y, wx + 0.6 * dx, wy + 0.6 * dy, 0.032, 0.034)
    fist_x, fist_y = wx + 0.35 * dx, wy + 0.35 * dy
    fist = sd_circle(cv.x, cv.y, fist_x, fist_y, 0.024)
    if shape == HAND["thumb_up"]:
        return np.minimum(fist, sd_segment(cv.x, cv.y, fist_x, fist_y, fist_x, fist_y - 0.045, 0.009))
    if shape == HAND["point"]:
        return np.minimum(fist, sd_segment(cv.x, cv.y, fist_x, fist_y, hx + 0.8 * dx, hy + 0.8 * dy, 0.008))
    return fist


def draw_arms(cv: Canvas, identity: dict, lay: dict, pose: dict):
    sleeve = _rgb(identity["clothes"])
    forearm = sleeve if identity["long_sleeves"] else _rgb(identity["skin"])
    hands = np.zeros_like(cv.img[..., 0])
    for side in ("r", "l"):
        chain = {k: (_f(x), _f(y)) for k, (x, y) in lay["arms"][side].items()}
        (sx, sy), (ex, ey), (wx, wy), (hx, hy) = (chain[k] for k in ("shoulder", "elbow", "wrist", "hand"))
        cv.paint(cv.cover(sd_segment(cv.x, cv.y, sx, sy, ex, ey, 0.036)), sleeve)
        cv.paint(cv.cover(sd_segment(cv.x, cv.y, ex, ey, wx, wy, 0.029)), forearm)
        shapes = pose[f"{side}_hand"].astype(int)
        cover = np.zeros_like(hands)
        for shape in np.unique(shapes):
            use = _f(shapes == shape)
            cover += use * cv.cover(_hand_sdf(cv, int(shape), wx, wy, hx, hy))
        cv.paint(cover, _rgb(identity["skin"]))
        if (shapes == HAND["palm_out"]).any():  # lighter palm centre so outward palms read as palms
            palm = cv.cover(sd_circle(cv.x, cv.y, wx + 0.6 * (hx - wx), wy + 0.6 * (hy - wy), 0.016))
            cv.paint(palm * _f(shapes == HAND["palm_out"]), _rgb(identity["skin"], 1.12))
        hands = np.maximum(hands, cover)
    return hands


def render_avatar(identity: dict, pose: dict, size: int):
    """-> frames uint8 (T, H, W, 3), joints float32 (T, J, 2) in pixels, masks bool (T, R, H, W)."""
    num_frames = len(pose["mouth_open"])
    cv = Canvas(num_frames, size, background_image(identity, size))
    lay = layout(identity, pose)
    draw_body(cv, identity, lay)
    regions = draw_head(cv, identity, lay, pose)
    regions["hands"] = draw_arms(cv, identity, lay, pose)
    masks = np.stack([np.broadcast_to(regions[r], cv.img.shape[:3]) > 0.5 for r in REGIONS], 1)
    frames = np.clip(cv.img * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames, joints_of(lay, size), masks
