"""Action lexicon of the prompt enhancer: motion verbs, body parts, and how each SynthAvatar action is
asked for (short-prompt hints) and recognised in a phase text (signatures).

Words are matched as lower-case word *prefixes* ("rais" matches raise/raises/raising), so inflections
need no stemmer. Signatures are alternatives of stem sets, all stems of one alternative must occur.
"""
from __future__ import annotations

import re

MOTION_VERBS = ("rais", "lift", "wav", "point", "gestur", "show", "open", "cross", "fold", "wrap", "clap",
                "applau", "signal", "plac", "rest", "lay", "put", "nod", "bob", "shak", "turn", "tilt", "cock",
                "lean", "look", "glanc", "shift", "hold", "extend", "lower", "drop", "swing", "tap", "touch",
                "press", "spread", "reach", "bow", "shrug", "direct", "giv")
BODY_PARTS = ("hand", "arm", "finger", "thumb", "palm", "wrist", "elbow", "shoulder", "chest", "heart",
              "head", "chin", "eye", "gaze", "brow", "face", "mouth", "lip", "torso", "body")

# action -> hints a user might type in a short prompt (train / held-out wording differ)
ACTION_HINTS = {
    "raise_left_hand": ("left hand up", "raise the left hand"),
    "raise_right_hand": ("right hand up", "raise the right hand"),
    "wave": ("a wave", "wave hello"),
    "point_down": ("point down", "point at the floor"),
    "palms_outward": ("open palms", "palms out"),
    "cross_arms": ("arms crossed", "cross the arms"),
    "clap": ("a clap", "clap"),
    "thumbs_up": ("thumbs up", "a thumbs up"),
    "hand_on_chest": ("hand on heart", "hand on the chest"),
    "nod": ("a nod", "nod"),
    "shake_head": ("head shake", "shake the head"),
    "tilt_head": ("head tilt", "tilt the head"),
    "look_left": ("look left", "glance left"),
    "look_right": ("look right", "glance right"),
}

SIGNATURES = {
    "raise_left_hand": (("left", "rais"), ("left", "lift"), ("left", "up"), ("left", "arm")),
    "raise_right_hand": (("right", "rais"), ("right", "lift"), ("right", "up"), ("right", "arm")),
    "wave": (("wav",),),
    "point_down": (("point", "down"), ("point", "floor"), ("finger", "ground"), ("point", "ground")),
    "palms_outward": (("palm", "out"), ("open", "palm"), ("both", "palm"), ("open", "hands")),
    "cross_arms": (("cross", "arm"), ("fold", "arm"), ("wrap", "arm")),
    "clap": (("clap",), ("applau",)),
    "thumbs_up": (("thumb",),),
    "hand_on_chest": (("hand", "chest"), ("palm", "chest"), ("hand", "heart")),
    "nod": (("nod",), ("bob", "head")),
    "shake_head": (("shak",), ("turn", "head")),
    "tilt_head": (("tilt",), ("cock", "head"), ("lean", "head")),
    "look_left": (("look", "left"), ("glanc", "left"), ("gaze", "left"), ("eye", "left")),
    "look_right": (("look", "right"), ("glanc", "right"), ("gaze", "right"), ("eye", "right")),
}

# body part named in a template phase text when the paraphrase itself names none
ACTION_PART = {"wave": "right hand", "clap": "both hands", "nod": "head", "shake_head": "head",
               "tilt_head": "head", "look_left": "eyes", "look_right": "eyes", "point_down": "index finger",
               "thumbs_up": "right thumb", "cross_arms": "arms", "palms_outward": "palms",
               "hand_on_chest": "right hand", "raise_left_hand": "left arm", "raise_right_hand": "right arm"}

_WORDS = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def _has(tokens: list[str], stem: str) -> bool:
    return any(t.startswith(stem) for t in tokens)


def motion_verbs(text: str) -> list[str]:
    """The motion-verb stems used in `text`, in order of first use."""
    tokens = words(text)
    return [stem for stem in MOTION_VERBS if _has(tokens, stem)]


def body_parts(text: str) -> list[str]:
    tokens = words(text)
    return [stem for stem in BODY_PARTS if _has(tokens, stem)]


def mentions(text: str, action: str) -> bool:
    """Does `text` describe `action` (one of its signatures fully present)?"""
    tokens = words(text)
    return any(all(_has(tokens, stem) for stem in alternative) for alternative in SIGNATURES[action])
