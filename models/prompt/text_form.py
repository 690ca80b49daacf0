"""The text form of a structured prompt (one ``Base:`` line, then ``Phase-k [s–e]: text`` lines) and prompt files.

The text form is what people and the prompt enhancer (rl/) write; `load_prompt` reads either form from a
file (``.json``: models/prompt/format.py's JSON form, ``.txt``: this one). Trade-off: the syntax is lenient
only where nothing is ambiguous (``Phase 1``/``Phase-1``, ``-``/``–``, `` / `` between blocks on one line);
the content goes through the same strict `validate` as the JSON form.
"""

from __future__ import annotations

import re
from pathlib import Path

from models.prompt.format import DEFAULT_MAX_PHASES, Phase, PromptError, StructuredPrompt, _window, from_json, validate

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
