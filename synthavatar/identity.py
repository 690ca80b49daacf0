"""SynthAvatar identities: the sampled look of one avatar (skin, hair, clothes, head shape, background).

An identity is a flat, JSON-serialisable dict of continuous parameters (colours in [0, 1] RGB, sizes)
and a few discrete ones (hair style, clothes style, background pattern). It stands in for the reference
identity that SyncDreamer's visual adapter must preserve (CSIM) and for the "identity" part of ActAvatar's
base block. Trade-off: a handful of parameters gives an exact ground truth and cheap interpolation between
identities (used by the identity-swap sanity test), at the price of far less variety than real faces.
"""
from __future__ import annotations

import numpy as np

HAIR_STYLES = ("short", "long", "bun", "buzz", "curly")
CLOTHES_STYLES = ("plain", "striped", "collared", "v-neck")
BACKGROUNDS = ("plain", "stripes", "checker", "dots", "gradient")

# Named colour anchors: sampled colours are jittered around these, and the name goes into the prompt.
SKIN_TONES = {"pale": (0.96, 0.84, 0.74), "light": (0.91, 0.74, 0.60), "tan": (0.80, 0.60, 0.44),
              "brown": (0.60, 0.42, 0.29), "dark": (0.38, 0.26, 0.18)}
HAIR_COLOURS = {"black": (0.08, 0.07, 0.07), "brown": (0.40, 0.24, 0.12), "blond": (0.90, 0.76, 0.42),
                "red": (0.70, 0.25, 0.10), "grey": (0.65, 0.65, 0.66), "blue": (0.20, 0.35, 0.85)}
CLOTHES_COLOURS = {"red": (0.80, 0.15, 0.15), "green": (0.15, 0.60, 0.25), "blue": (0.15, 0.30, 0.80),
                   "yellow": (0.92, 0.80, 0.15), "purple": (0.50, 0.20, 0.65), "white": (0.93, 0.93, 0.93),
                   "black": (0.12, 0.12, 0.14), "orange": (0.95, 0.50, 0.10)}
BACKGROUND_COLOURS = {"beige": (0.87, 0.82, 0.70), "teal": (0.20, 0.55, 0.55), "grey": (0.55, 0.56, 0.58),
                      "navy": (0.12, 0.16, 0.35), "pink": (0.93, 0.70, 0.75), "olive": (0.50, 0.52, 0.25),
                      "sky": (0.60, 0.80, 0.95)}
EYE_COLOURS = {"brown": (0.35, 0.20, 0.10), "blue": (0.20, 0.45, 0.80), "green": (0.20, 0.55, 0.30)}

# Keys that are colours (3 floats) or scalars: interpolation and the identity vector use these.
COLOUR_KEYS = ("skin", "hair", "clothes", "bg_a", "bg_b", "eyes", "lips")
SCALAR_KEYS = ("head_rx", "head_ry", "shoulder_half_width", "eye_spacing", "hair_volume", "bg_scale")
DISCRETE_KEYS = ("hair_style", "clothes_style", "background", "long_sleeves")


def _jitter(rng: np.random.Generator, colour, amount=0.05) -> list[float]:
    return [float(c) for c in np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0.0, 1.0)]


def _pick(rng: np.random.Generator, table: dict, exclude: str | None = None) -> str:
    names = [n for n in table if n != exclude]
    return names[int(rng.integers(len(names)))]


def sample_identity(rng: np.random.Generator, hair_style: str | None = None,
                    clothes_style: str | None = None, background: str | None = None) -> dict:
    """Sample one identity; discrete attributes can be fixed (the split design reserves combinations)."""
    skin, hair, clothes = _pick(rng, SKIN_TONES), _pick(rng, HAIR_COLOURS), _pick(rng, CLOTHES_COLOURS)
    bg_a = _pick(rng, BACKGROUND_COLOURS)
    bg_b = _pick(rng, BACKGROUND_COLOURS, exclude=bg_a)
    eyes = _pick(rng, EYE_COLOURS)
    skin_rgb = _jitter(rng, SKIN_TONES[skin], 0.03)
    return {
        "names": {"skin": skin, "hair": hair, "clothes": clothes, "bg_a": bg_a, "bg_b": bg_b, "eyes": eyes},
        "skin": skin_rgb, "hair": _jitter(rng, HAIR_COLOURS[hair]),
        "clothes": _jitter(rng, CLOTHES_COLOURS[clothes]),
        "bg_a": _jitter(rng, BACKGROUND_COLOURS[bg_a]), "bg_b": _jitter(rng, BACKGROUND_COLOURS[bg_b]),
        "eyes": _jitter(rng, EYE_COLOURS[eyes], 0.03),
        # Lips: a darker, redder version of the skin so the mouth is visible on every skin tone.
        "lips": [float(np.clip(skin_rgb[0] * 0.75 + 0.08, 0, 1)), skin_rgb[1] * 0.45, skin_rgb[2] * 0.45],
        "head_rx": float(rng.uniform(0.105, 0.13)), "head_ry": float(rng.uniform(0.13, 0.155)),
        "shoulder_half_width": float(rng.uniform(0.15, 0.19)), "eye_spacing": float(rng.uniform(0.042, 0.052)),
        "hair_volume": float(rng.uniform(0.0, 1.0)), "bg_scale": float(rng.uniform(6.0, 12.0)),
        "hair_style": hair_style or HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        "clothes_style": clothes_style or CLOTHES_STYLES[int(rng.integers(len(CLOTHES_STYLES)))],
        "background": background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        "long_sleeves": bool(rng.random() < 0.5),
    }


def interpolate_identity(a: dict, b: dict, alpha: float) -> dict:
    """Blend identity a towards b: continuous keys linearly; discrete keys switch at alpha >= 0.5."""
    out = dict(a)
    for key in COLOUR_KEYS:
        out[key] = [float((1 - alpha) * x + alpha * y) for x, y in zip(a[key], b[key])]
    for key in SCALAR_KEYS:
        out[key] = float((1 - alpha) * a[key] + alpha * b[key])
    src = b if alpha >= 0.5 else a
    for key in DISCRETE_KEYS + ("names",):
        out[key] = src[key]
    return out


def identity_vector(identity: dict) -> np.ndarray:
    """Continuous identity descriptor (colours + normalised sizes + one-hot styles), float32 (D,)."""
    parts = [np.asarray(identity[k], np.float32) for k in COLOUR_KEYS]
    parts.append(np.asarray([identity[k] for k in SCALAR_KEYS], np.float32) / np.asarray(
        [0.15, 0.15, 0.2, 0.05, 1.0, 12.0], np.float32))
    for key, values in (("hair_style", HAIR_STYLES), ("clothes_style", CLOTHES_STYLES),
                        ("background", BACKGROUNDS)):
        parts.append(np.asarray([identity[key] == v for v in values], np.float32))
    parts.append(np.asarray([float(identity["long_sleeves"])], np.float32))
    return np.concatenate(parts)


IDENTITY_DIM = len(identity_vector(sample_identity(np.random.default_rng(0))))


BACKGROUND_PATTERNS = {"stripes": "striped", "checker": "checkered", "dots": "polka-dot"}


def hair_phrase(identity: dict) -> str:
    """'short black hair', 'a brown buzz cut', ... (prompts and the RL enhancer's attributes)."""
    c = identity["names"]["hair"]
    return {"short": f"short {c} hair", "long": f"long {c} hair", "bun": f"{c} hair in a bun",
            "buzz": f"a {c} buzz cut", "curly": f"curly {c} hair"}[identity["hair_style"]]


def top_phrase(identity: dict) -> str:
    """'long-sleeved red striped shirt', ... (without an article)."""
    sleeves = "long-sleeved" if identity["long_sleeves"] else "short-sleeved"
    top = {"plain": "shirt", "striped": "striped shirt", "collared": "collared shirt",
           "v-neck": "v-neck top"}[identity["clothes_style"]]
    return f"{sleeves} {identity['names']['clothes']} {top}"


def describe_identity(identity: dict) -> str:
    """One sentence naming the identity, used as the first sentence of the prompt's base block."""
    n = identity["names"]
    return f"A person with {n['skin']} skin and {hair_phrase(identity)}, wearing a {top_phrase(identity)}."


def describe_scene(identity: dict) -> str:
    n = identity["names"]
    bg = identity["background"]
    if bg == "plain":
        return f"They stand in front of a plain {n['bg_a']} wall."
    if bg == "gradient":
        return f"They stand in front of a wall fading from {n['bg_a']} to {n['bg_b']}."
    pattern = BACKGROUND_PATTERNS[bg]
    return f"They stand in front of a {pattern} {n['bg_a']} and {n['bg_b']} wall."
