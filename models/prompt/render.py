"""Renderings of a structured prompt used by training and evaluation (ActAvatar §3.2 and its baselines).

`to_global` is the flat prompt of the paper's global-prompt baseline (same content, no timing), `to_brief`
the brief caption of stage-1 training, `normalized_windows` the phase windows as clip fractions (what the
phase-aware attention consumes), `phase_at` the phase active at a time. Trade-off: the renderings are
rule-based English (sentence joins, clause case), which suits templated and human-written prompts alike
but is no paraphraser: the global baseline keeps the structured prompt's exact wording.
"""

from __future__ import annotations

import re

from models.prompt.format import PromptError, StructuredPrompt, _check_duration
from models.prompt.text_form import _one_line

_SENTENCE_END = re.compile(r"[.!?]+$")
# First sentence: up to the first . ! ? that is followed by end of text or by a
# new sentence (space + capital/quote/paren); "1.8 m" or "e.g. a" do not split.
_FIRST_SENTENCE = re.compile(r"^(.*?[.!?])(?=\s*$|\s+[A-Z\"'“(])", re.DOTALL)


def _as_sentence(text: str) -> str:
    text = _one_line(text)
    return text if _SENTENCE_END.search(text) else text + "."


def _as_clause(text: str) -> str:
    """Phase text as a clause inside a sentence: no final period, lower-cased start.

    Only a Title-case first word ("She", "Then") is lower-cased, so acronyms
    ("TV") and "I" keep their case.
    """
    clause = _SENTENCE_END.sub("", _one_line(text)).strip()
    first_word = clause.split(" ", 1)[0]
    if first_word != "I" and first_word[:1].isupper() and first_word[1:] == first_word[1:].lower():
        clause = clause[0].lower() + clause[1:]
    return clause


def _join_in_order(clauses: list[str]) -> str:
    """'A' / 'First, A, and then B.' / 'First, A, then B, and finally C.'"""
    if len(clauses) == 1:
        sentence = clauses[0]
        return sentence[:1].upper() + sentence[1:] + "."
    if len(clauses) == 2:
        return f"First, {clauses[0]}, and then {clauses[1]}."
    middle = "".join(f", then {clause}" for clause in clauses[1:-1])
    return f"First, {clauses[0]}{middle}, and finally {clauses[-1]}."


def to_global(prompt: StructuredPrompt) -> str:
    """Flat prompt of the paper's global-prompt baseline: same content, no timing."""
    clauses = [_as_clause(phase.text) for phase in prompt.phases]
    if not clauses:  # a chained window inside a gap between phases (inference/windows.py)
        return _as_sentence(prompt.base)
    return f"{_as_sentence(prompt.base)} {_join_in_order(clauses)}"


def to_brief(prompt: StructuredPrompt) -> str:
    """Brief caption for stage-1 training: the first sentence of the base block.

    Convention: the base block opens with one sentence describing the identity
    (who is on screen), e.g. "A person with short black hair in a red shirt.";
    later sentences may add scene/style detail that the brief caption omits.
    """
    base = _one_line(prompt.base)
    match = _FIRST_SENTENCE.match(base)
    return match[1] if match else _as_sentence(base)


def _known_duration(prompt: StructuredPrompt, duration: float | None) -> float:
    clip = duration if duration is not None else prompt.duration
    if clip is None:
        raise PromptError("normalized_windows: clip duration unknown (pass duration= or set prompt.duration)")
    return _check_duration(clip, "normalized_windows")


def normalized_windows(prompt: StructuredPrompt, duration: float | None = None) -> list[tuple[float, float]]:
    """Phase windows as fractions of the clip, in [0, 1] (for frame-index masks)."""
    clip = _known_duration(prompt, duration)
    # min(): an end within DURATION_TOLERANCE past the clip maps to exactly 1.0.
    return [(min(p.start / clip, 1.0), min(p.end / clip, 1.0)) for p in prompt.phases]


def phase_at(prompt: StructuredPrompt, t: float) -> int:
    """1-based phase whose window ``[start, end)`` contains ``t``; 0 = base only.

    Windows are half-open so that at a shared boundary the later phase wins and
    every time maps to at most one phase.  Gaps between phases return 0.
    """
    for number, phase in enumerate(prompt.phases, start=1):
        if phase.start <= t < phase.end:
            return number
    return 0


def cut_window(prompt: StructuredPrompt, start: float, end: float,
               min_piece: float = 0.0) -> tuple[StructuredPrompt, list[int]]:
    """The prompt seen by a window [start, end) of its clip (seconds), in the window's own time.

    Each phase that overlaps the window by at least `min_piece` seconds keeps its text and action with
    its window clipped to [start, end) and shifted by -start, so a phase cut by a window boundary continues
    in the next window. Returns the cut prompt (duration end - start; it may have no phase at all when the
    window falls in a gap: not validated, encode it with encode_prompts) and, per kept phase, its 0-based
    index in `prompt.phases`. Used by chained-window generation and by real-video clip segmentation."""
    duration = end - start
    if duration <= 0:
        raise PromptError(f"cut_window: empty window [{start}, {end})")
    phases, kept = [], []
    for index, p in enumerate(prompt.phases):
        s, e = max(p.start, start) - start, min(p.end, end) - start
        if e - s > 0 and e - s >= min_piece - 1e-9:
            phases.append(type(p)(round(s, 4), round(min(e, duration), 4), p.text, p.action))
            kept.append(index)
    return StructuredPrompt(prompt.base, tuple(phases), duration), kept
