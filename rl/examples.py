"""Enhancer examples from SynthAvatar, the policy's chat prompt, and the template enhancer.

An example is what the enhancer sees (a user's short prompt, the reference image's attributes, the
audio's timing summary) plus what the rewards need (requested actions, duration). SynthAvatar clip specs
give all of it with ground truth: attributes from the identity, timing from the synthesised waveform
(librosa, rl/timing.py), actions from the phases. The test split has unseen looks and paraphrases, and
its short prompts use held-out wording.

`template_enhance` is a rule-based enhancer: the base block from the attributes and mood, one phase per
requested action on the speech segments. It writes the SFT warm-start targets and is a baseline row in
evaluation. Trade-off: it places phases on speech only; a learned policy can do better (emphasis peaks).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from rl.attributes import ground_truth_attributes
from rl.lexicon import ACTION_HINTS, ACTION_PART, body_parts
from rl.timing import AudioTiming, audio_timing

SYSTEM_PROMPT = ("Write a structured prompt: 'Base: ...' (person, clothes, background, manner), then one "
                 "'Phase-k [start-end]: ...' line per action, on the speech, with a motion and a body part.")
SHORT_TEMPLATES = {"train": ("{mood} talk with {hints}", "a {mood} speaker: {hints}", "{hints}, {mood} tone"),
                   "test": ("make a {mood} presenter do {hints}",)}


@dataclass
class EnhancerExample:
    clip: str
    short_prompt: str
    attributes: list[str]
    mood: str
    actions: list[str]
    timing: AudioTiming

    @property
    def duration(self) -> float:
        return self.timing.duration

    def to_json(self) -> str:
        return json.dumps({"clip": self.clip, "short_prompt": self.short_prompt, "attributes": self.attributes,
                           "mood": self.mood, "actions": self.actions, "timing": self.timing.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> EnhancerExample:
        d = json.loads(text)
        return cls(d["clip"], d["short_prompt"], d["attributes"], d["mood"], d["actions"],
                   AudioTiming.from_dict(d["timing"]))


def user_message(ex: EnhancerExample) -> str:
    return (f"Request: {ex.short_prompt}\nReference: {'; '.join(ex.attributes)}\n"
            f"Audio: {ex.timing.describe()}")


def chat_prompt(ex: EnhancerExample) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message(ex)}]


def short_prompt(rng, split: str, mood: str, actions: list[str]) -> str:
    hints = [ACTION_HINTS[a][0 if split == "train" else 1] for a in actions]
    joined = hints[0] if len(hints) == 1 else ", then ".join([", ".join(hints[:-1]), hints[-1]])
    templates = SHORT_TEMPLATES["train" if split == "train" else "test"]
    return templates[int(rng.integers(len(templates)))].format(mood=mood, hints=joined)


def spec_example(name: str, split: str, spec: dict, wave: np.ndarray, sample_rate: int, rng) -> EnhancerExample:
    """The enhancer's input for a SynthAvatar clip spec and its audio; the short prompt uses `split`'s wording."""
    actions = [p["action"] for p in spec["phases"]]
    return EnhancerExample(name, short_prompt(rng, split, spec["mood"], actions),
                           ground_truth_attributes(spec["identity"]), spec["mood"], actions,
                           audio_timing(wave, sample_rate))


def synthavatar_examples(split: str, count: int, duration: float = 4.0, seed: int = 0,
                         progress: bool = False) -> list[EnhancerExample]:
    """`count` examples from SynthAvatar clip specs of `split` (audio synthesised, no video rendered)."""
    from tqdm import tqdm

    from synthavatar import audio
    from synthavatar.clip import sample_clip_spec
    from synthavatar.splits import SPLIT_ID
    examples = []
    for i in tqdm(range(count), desc=f"enhancer examples ({split})", disable=not progress):
        seq = np.random.SeedSequence([seed, 7919, SPLIT_ID[split], i])
        spec = sample_clip_spec(seq, split, duration)
        wave = audio.synthesize(audio.AudioSchedule.from_dict(spec["audio"]), seed=spec["audio_seed"])
        rng = np.random.default_rng(seq.spawn(1)[0])
        examples.append(spec_example(f"{split}-{i:05d}", split, spec, wave, audio.SAMPLE_RATE, rng))
    return examples


# ------------------------------------------------------------------------------- template enhancer

def _windows_on_speech(timing: AudioTiming, count: int, min_len: float = 0.5) -> list[tuple[float, float]]:
    """`count` ordered windows on a 0.1 s grid: speech segments grouped (or the speech span split evenly)."""
    segs = timing.segments or [(0.0, timing.duration)]
    if len(segs) >= count:
        groups = np.array_split(np.arange(len(segs)), count)
        spans = [(segs[g[0]][0], segs[g[-1]][1]) for g in groups]
    else:
        lo, hi = segs[0][0], segs[-1][1]
        cuts = np.linspace(lo, hi, count + 1)
        spans = list(zip(cuts[:-1], cuts[1:]))
    windows, last = [], 0.0
    for start, end in spans:
        start = max(last, round(float(start), 1))
        end = min(timing.duration, max(round(float(end), 1), start + min_len))
        windows.append((start, round(end, 1)))
        last = round(end, 1)
    return windows


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def phase_text(action: str, paraphrase: str) -> str:
    text = f"The person {paraphrase}"
    if not body_parts(paraphrase):
        text += f" with the {ACTION_PART[action]}"
    return text + "."


def template_enhance(ex: EnhancerExample, variant: int = 0) -> str:
    """The rule-based structured prompt (text form, '-' in windows) for `ex`."""
    from synthavatar.actions import ACTION_BY_NAME
    looks, place = ", ".join(ex.attributes[:-1]), ex.attributes[-1]
    base = f"A person with {looks} in front of {place}, speaking in {_article(ex.mood)} {ex.mood} manner."
    lines = [f"Base: {base}"]
    windows = _windows_on_speech(ex.timing, len(ex.actions))
    for k, (action, (start, end)) in enumerate(zip(ex.actions, windows), start=1):
        pool = ACTION_BY_NAME[action].train_paraphrases
        lines.append(f"Phase-{k} [{start:.1f}-{end:.1f}]: {phase_text(action, pool[(variant + k) % len(pool)])}")
    return "\n".join(lines)
