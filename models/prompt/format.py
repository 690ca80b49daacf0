"""The structured-prompt format of ActAvatar-style phase-aware conditioning: data model, validation, JSON and text forms.

ActAvatar (Sec. "Phase-Aware Cross-Attention") conditions the video model on a
structured prompt ``P = {P_base, {(P_k, T_k)}_k}``: a *base block* ``P_base``
that holds for the whole clip (identity, appearance, scene) and up to a few
*phase blocks*, each a text ``P_k`` bound to a time window ``T_k = [start, end)``
in seconds.  The model's phase-aware attention lets frames inside ``T_k`` attend
to ``P_k`` (plus the base block), so the windows must be well formed.

This module holds the data model (:class:`Phase`, :class:`StructuredPrompt`),
two serialisations (a versioned JSON form and a one-line-per-block text form),
and the validation that guards all of them; the renderings (flat *global*
prompt, *brief* caption, normalised windows, per-time phase lookup) are in
models/prompt/render.py.  It belongs to the core: every data source (SynthAvatar,
real video) hands the model prompts in this format.  See ``docs/prompt_format.md``.

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
from dataclasses import dataclass
from typing import Any

from common.errors import PromptError

__all__ = [
    "PROMPT_JSON_SCHEMA",
    "PROMPT_JSON_VERSION",
    "Phase",
    "PromptError",
    "StructuredPrompt",
    "format_seconds",
    "from_json",
    "to_json",
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
        "expressible here are enforced by models.prompt.validate: start < end, "
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
