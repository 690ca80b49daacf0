"""Structured prompts for ActAvatar-style phase-aware conditioning.

ActAvatar (Sec. "Phase-Aware Cross-Attention") conditions the video model on a
structured prompt ``P = {P_base, {(P_k, T_k)}_k}``: a *base block* ``P_base``
that holds for the whole clip (identity, appearance, scene) and up to a few
*phase blocks*, each a text ``P_k`` bound to a time window ``T_k = [start, end)``
in seconds.  The model's phase-aware attention lets frames inside ``T_k`` attend
to ``P_k`` (plus the base block), so the windows must be well formed.

This module holds the data model (:class:`Phase`, :class:`StructuredPrompt`),
two serialisations (a versioned JSON form and a one-line-per-block text form),
the renderings needed elsewhere (flat *global* prompt for the baseline, *brief*
caption for stage-1 training, normalised windows, per-time phase lookup), and
the validation that guards all of them.  See ``docs/prompt_format.md``.

Trade-off, strict vs. lenient: content is validated strictly (unknown JSON
fields, overlapping or out-of-clip windows, empty texts are errors, never
silently fixed) because a prompt that is quietly "repaired" trains the model on
a timing the author never meant, and such bugs are invisible in the output.
Syntax is lenient only where there is no ambiguity (the text form accepts
``Phase 1``/``Phase-1``, ``-``/``–``, `` / `` as a line separator, optional
spaces).  Every error is a :class:`PromptError` whose message starts with the
source (file name) and names the phase, so a bad item in a data set of
thousands can be found and fixed from the message alone.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from common.errors import PromptError  # noqa: F401 (raised here, caught by its callers)

__all__ = [
    "PROMPT_JSON_SCHEMA",
    "PROMPT_JSON_VERSION",
    "Phase",
    "PromptError",
    "StructuredPrompt",
    "format_seconds",
    "from_json",
    "from_text",
    "load_prompt",
    "normalized_windows",
    "phase_at",
    "to_brief",
    "to_global",
    "to_json",
    "to_text",
    "validate",
]

PROMPT_JSON_VERSION = 1
DEFAULT_MAX_PHASES = 8
# Slack for float round-off when comparing a window end with the clip duration
# (e.g. durations computed as n_frames / fps).
DURATION_TOLERANCE = 1e-6
# Phase texts longer than this are shortened in error messages.
_LABEL_TEXT_CHARS = 40


@dataclass(frozen=True)
class Phase:
    """One phase block: ``text`` applies to frames with ``start <= t < end`` (seconds).

    ``action`` is an optional ground-truth action id (e.g. ``"wave"``) kept for
    evaluation; it is metadata and never rendered into any prompt text.
    """

    start: float
    end: float
    text: str
    action: str | None = None


@dataclass(frozen=True)
class StructuredPrompt:
    """Base block plus time-bound phase blocks; ``duration`` (s) is optional."""

    base: str
    phases: tuple[Phase, ...]
    duration: float | None = None


# --------------------------------------------------------------------------- #
# JSON schema (documentation + interop; validation below is by hand so that
# messages can name the phase and we need no jsonschema dependency)
# --------------------------------------------------------------------------- #

PROMPT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "https://actsync.invalid/schemas/structured-prompt-v1.json",
    "title": "ActAvatar structured prompt",
    "description": (
        "Base block plus phase blocks bound to time windows. Cross-field rules not "
        "expressible here are enforced by synthavatar.prompts.validate: start < end, "
        "end <= duration, phases ordered by start and non-overlapping (touching allowed), "
        "texts non-empty after stripping whitespace."
    ),
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "base", "phases"],
    "properties": {
        "version": {"const": PROMPT_JSON_VERSION, "description": "Format version."},
        "duration": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "description": "Clip length in seconds; optional.",
        },
        "base": {
            "type": "string",
            "minLength": 1,
            "pattern": r"\S",
            "description": "Base block: identity/appearance/scene, valid for the whole clip. "
            "Its first sentence is the brief caption.",
        },
        "phases": {
            "type": "array",
            "minItems": 1,
            "maxItems": DEFAULT_MAX_PHASES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["start", "end", "text"],
                "properties": {
                    "start": {"type": "number", "minimum": 0, "description": "Window start (s), inclusive."},
                    "end": {"type": "number", "exclusiveMinimum": 0, "description": "Window end (s), exclusive."},
                    "text": {"type": "string", "minLength": 1, "pattern": r"\S"},
                    "action": {
                        "type": ["string", "null"],
                        "description": "Optional ground-truth action id; not rendered into text.",
                    },
                },
            },
        },
    },
}

_TOP_LEVEL_FIELDS = ("version", "duration", "base", "phases")
_REQUIRED_TOP_LEVEL = ("version", "base", "phases")
_PHASE_FIELDS = ("start", "end", "text", "action")
_REQUIRED_PHASE = ("start", "end", "text")


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #


def format_seconds(seconds: float) -> str:
    """One decimal (``2.0``) unless more are needed to be exact (``1.25``)."""
    one_decimal = f"{seconds:.1f}"
    if float(one_decimal) == seconds:
        return one_decimal
    # repr gives the shortest string that parses back to the same float, so the
    # text rendering round-trips exactly.
    return repr(float(seconds))


def _window(start: float, end: float) -> str:
    return f"[{format_seconds(start)}s–{format_seconds(end)}s]"


def _phase_label(number: int, text: Any) -> str:
    """'phase 2' or "phase 2 ('waves')": the text makes the phase findable in a file."""
    if not isinstance(text, str) or not text.strip():
        return f"phase {number}"
    short = " ".join(text.split())
    if len(short) > _LABEL_TEXT_CHARS:
        short = short[: _LABEL_TEXT_CHARS - 1] + "…"
    return f"phase {number} ('{short}')"


def _is_number(value: Any) -> bool:
    # bool is an int subclass; `true` as a time is always a mistake.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _did_you_mean(name: str, valid: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid fields: {', '.join(valid)})"


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _check_duration(duration: Any, source: str) -> float | None:
    if duration is None:
        return None
    if not _is_number(duration) or not math.isfinite(duration) or duration <= 0:
        raise PromptError(f"{source}: duration must be a positive number of seconds, got {duration!r}")
    return float(duration)


def _check_phase(phase: Any, number: int, duration: float | None, source: str) -> Phase:
    """Checks one phase on its own (ordering is checked by the caller)."""
    if not isinstance(phase, Phase):
        raise PromptError(f"{source}: phase {number}: expected a Phase, got {_type_name(phase)}")
    where = f"{source}: {_phase_label(number, phase.text)}"
    for name in ("start", "end"):
        value = getattr(phase, name)
        if not _is_number(value) or not math.isfinite(value):
            raise PromptError(f"{where}: {name} must be a finite number of seconds, got {value!r}")
    if not isinstance(phase.text, str) or not phase.text.strip():
        raise PromptError(f"{where}: text is empty")
    if phase.action is not None and not isinstance(phase.action, str):
        raise PromptError(f"{where}: action must be a string or None, got {_type_name(phase.action)}")
    window = _window(phase.start, phase.end)
    if phase.start < 0:
        raise PromptError(f"{where}: window {window} starts before 0s")
    if phase.end <= phase.start:
        reason = "is empty" if phase.end == phase.start else "ends before it starts"
        raise PromptError(f"{where}: window {window} {reason}")
    if duration is not None and phase.end > duration + DURATION_TOLERANCE:
        raise PromptError(f"{where}: window {window} ends after the clip ({format_seconds(duration)}s)")
    return Phase(float(phase.start), float(phase.end), phase.text.strip(), phase.action)


def _check_order(previous: Phase, current: Phase, number: int, source: str) -> None:
    where = f"{source}: {_phase_label(number, current.text)}"
    window = _window(current.start, current.end)
    if current.start < previous.start:
        raise PromptError(
            f"{where}: window {window} starts before phase {number - 1} "
            f"({format_seconds(previous.start)}s); phases must be ordered by start time"
        )
    if current.start < previous.end:
        raise PromptError(
            f"{where} overlaps phase {number - 1}: {window} starts before {format_seconds(previous.end)}s"
        )


def validate(
    prompt: StructuredPrompt,
    duration: float | None = None,
    source: str = "<prompt>",
    max_phases: int = DEFAULT_MAX_PHASES,
) -> StructuredPrompt:
    """Checks ``prompt`` and returns a normalised copy (floats, stripped texts).

    ``duration`` (seconds) overrides ``prompt.duration`` when given; the
    returned prompt carries whichever was used.  Raises :class:`PromptError`
    on the first problem found.
    """
    if not isinstance(prompt, StructuredPrompt):
        raise PromptError(f"{source}: expected a StructuredPrompt, got {_type_name(prompt)}")
    clip = _check_duration(duration if duration is not None else prompt.duration, source)
    if not isinstance(prompt.base, str) or not prompt.base.strip():
        raise PromptError(f"{source}: base block is empty")
    phases = tuple(prompt.phases) if isinstance(prompt.phases, (list, tuple)) else None
    if not phases:
        raise PromptError(f"{source}: no phases; a structured prompt needs at least one phase block")
    if len(phases) > max_phases:
        raise PromptError(f"{source}: {len(phases)} phases, at most {max_phases} allowed")
    checked: list[Phase] = []
    for number, phase in enumerate(phases, start=1):
        current = _check_phase(phase, number, clip, source)
        if checked:
            _check_order(checked[-1], current, number, source)
        checked.append(current)
    return StructuredPrompt(prompt.base.strip(), tuple(checked), clip)


# --------------------------------------------------------------------------- #
# JSON form
# --------------------------------------------------------------------------- #


def _reject_unknown_fields(obj: dict, valid: tuple[str, ...], where: str) -> None:
    for name in obj:
        if name not in valid:
            raise PromptError(f"{where}: unknown field '{name}'{_did_you_mean(str(name), valid)}")


def _require_fields(obj: dict, required: tuple[str, ...], where: str) -> None:
    for name in required:
        if name not in obj:
            raise PromptError(f"{where}: missing required field '{name}'")


def _phase_from_json(obj: Any, number: int, source: str) -> Phase:
    if not isinstance(obj, dict):
        raise PromptError(f"{source}: phase {number}: expected an object, got {_type_name(obj)}")
    where = f"{source}: {_phase_label(number, obj.get('text'))}"
    _reject_unknown_fields(obj, _PHASE_FIELDS, where)
    _require_fields(obj, _REQUIRED_PHASE, where)
    for name in ("start", "end"):
        if not _is_number(obj[name]):
            raise PromptError(
                f"{where}: field '{name}' must be a number (seconds), got {_type_name(obj[name])} {obj[name]!r}"
            )
    if not isinstance(obj["text"], str):
        raise PromptError(f"{where}: field 'text' must be a string, got {_type_name(obj['text'])}")
    action = obj.get("action")
    if action is not None and not isinstance(action, str):
        raise PromptError(f"{where}: field 'action' must be a string or null, got {_type_name(action)}")
    return Phase(obj["start"], obj["end"], obj["text"], action)


def _parse_json_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PromptError(
            f"{source}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def _check_top_level(obj: Any, source: str) -> None:
    if not isinstance(obj, dict):
        raise PromptError(f"{source}: expected a JSON object at top level, got {_type_name(obj)}")
    _reject_unknown_fields(obj, _TOP_LEVEL_FIELDS, source)
    _require_fields(obj, _REQUIRED_TOP_LEVEL, source)
    version = obj["version"]
    if not _is_number(version):
        raise PromptError(f"{source}: field 'version' must be the integer {PROMPT_JSON_VERSION}, got {version!r}")
    if version != PROMPT_JSON_VERSION:
        raise PromptError(f"{source}: unsupported version {version!r} (this reader understands version 1)")
    if not isinstance(obj["base"], str):
        raise PromptError(f"{source}: field 'base' must be a string, got {_type_name(obj['base'])}")
    if not isinstance(obj["phases"], list):
        raise PromptError(f"{source}: field 'phases' must be a list, got {_type_name(obj['phases'])}")
    duration = obj.get("duration")
    if duration is not None and not _is_number(duration):
        raise PromptError(f"{source}: field 'duration' must be a number or null, got {_type_name(duration)}")


def from_json(
    obj: dict | str,
    source: str = "<json>",
    duration: float | None = None,
    max_phases: int = DEFAULT_MAX_PHASES,
) -> StructuredPrompt:
    """Parses the version-1 JSON form (a dict or JSON text) and validates it."""
    if isinstance(obj, str):
        obj = _parse_json_text(obj, source)
    _check_top_level(obj, source)
    phases = tuple(_phase_from_json(item, k, source) for k, item in enumerate(obj["phases"], start=1))
    prompt = StructuredPrompt(obj["base"], phases, obj.get("duration"))
    return validate(prompt, duration=duration, source=source, max_phases=max_phases)


def to_json(prompt: StructuredPrompt) -> dict:
    """The version-1 JSON dict; optional fields are omitted when None."""
    out: dict[str, Any] = {"version": PROMPT_JSON_VERSION}
    if prompt.duration is not None:
        out["duration"] = prompt.duration
    out["base"] = prompt.base
    out["phases"] = [_phase_to_json(phase) for phase in prompt.phases]
    return out


def _phase_to_json(phase: Phase) -> dict:
    item: dict[str, Any] = {"start": phase.start, "end": phase.end, "text": phase.text}
    if phase.action is not None:
        item["action"] = phase.action
    return item


# --------------------------------------------------------------------------- #
# Text form
# --------------------------------------------------------------------------- #

_NUMBER = r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"
_BASE_LINE = re.compile(r"^\s*base\s*:\s*(?P<text>.*?)\s*$", re.IGNORECASE)
_PHASE_LINE = re.compile(
    r"^\s*phase\s*-?\s*(?P<number>\d+)\s*"
    rf"\[\s*(?P<start>{_NUMBER})\s*s?\s*[–—-]\s*(?P<end>{_NUMBER})\s*s?\s*\]"
    r"\s*:\s*(?P<text>.*?)\s*$",
    re.IGNORECASE,
)
# ' / ' separates blocks on one line only when a phase header follows, so a
# '/' inside a description ("black/white shirt") is left alone.
_INLINE_SEPARATOR = re.compile(r"\s*/\s*(?=phase\s*-?\s*\d)", re.IGNORECASE)


def _one_line(text: str) -> str:
    # The text form is one block per line, so internal line breaks become spaces.
    return " ".join(text.split())


def to_text(prompt: StructuredPrompt) -> str:
    """``Base: ...`` then ``Phase-k [s–e]: ...`` lines; drops duration and action."""
    lines = [f"Base: {_one_line(prompt.base)}"]
    for number, phase in enumerate(prompt.phases, start=1):
        lines.append(f"Phase-{number} {_window(phase.start, phase.end)}: {_one_line(phase.text)}")
    return "\n".join(lines)


def _split_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, block) pairs; blank lines are skipped."""
    blocks = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        for block in _INLINE_SEPARATOR.split(line):
            if block.strip():
                blocks.append((line_number, block.strip()))
    return blocks


def _parse_phase_line(line: str, line_number: int, expected: int, source: str) -> Phase:
    match = _PHASE_LINE.match(line)
    if match is None:
        raise PromptError(
            f"{source}: line {line_number}: cannot parse {line!r} (expected 'Phase-{expected} [start–end]: text')"
        )
    number = int(match["number"])
    if number != expected:
        raise PromptError(
            f"{source}: line {line_number}: phase numbered {number} out of sequence, expected {expected}: {line!r}"
        )
    return Phase(float(match["start"]), float(match["end"]), match["text"])


def from_text(
    text: str,
    duration: float | None = None,
    source: str = "<text>",
    max_phases: int = DEFAULT_MAX_PHASES,
) -> StructuredPrompt:
    """Parses the text rendering (see :func:`to_text`) and validates it."""
    blocks = _split_blocks(text)
    if not blocks:
        raise PromptError(f"{source}: empty prompt; expected a 'Base: ...' line")
    first_line, first = blocks[0]
    base_match = _BASE_LINE.match(first)
    if base_match is None:
        raise PromptError(f"{source}: line {first_line}: missing 'Base: ...' line before {first!r}")
    phases = []
    for line_number, block in blocks[1:]:
        if _BASE_LINE.match(block):
            raise PromptError(f"{source}: line {line_number}: second 'Base:' line {block!r}")
        phases.append(_parse_phase_line(block, line_number, len(phases) + 1, source))
    prompt = StructuredPrompt(base_match["text"], tuple(phases), None)
    return validate(prompt, duration=duration, source=source, max_phases=max_phases)


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def load_prompt(path: str | Path, duration: float | None = None) -> StructuredPrompt:
    """Reads a ``.json`` (JSON form) or ``.txt`` (text form) prompt file.

    Errors name the path.  ``duration`` overrides the file's duration (the
    text form has none, so pass the clip length to check windows against it).
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".txt"):
        raise PromptError(f"{source}: unsupported prompt file type '{path.suffix}' (expected .json or .txt)")
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PromptError(f"{source}: cannot read prompt file: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise PromptError(f"{source}: not valid UTF-8 text (byte {error.start})") from None
    if suffix == ".json":
        return from_json(content, source=source, duration=duration)
    return from_text(content, duration=duration, source=source)


# --------------------------------------------------------------------------- #
# Renderings used by training / evaluation
# --------------------------------------------------------------------------- #

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
