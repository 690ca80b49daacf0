"""The web demo's inputs without the UI (inference/web_demo.py): phase rows <-> structured prompt, the
waveform-with-phases figure, and the prompt enhancer filling the rows from a short prompt.

Phase rows are what the table edits: [text, start s, end s]; blank rows are ignored; a row with a text and
a bad number is a fault named by its row. Faults raise `WebInputError` with a one-line message that the UI
shows as is. Trade-off: rows are checked here only for shape and numbers; everything about the prompt
itself (order, overlap, the audio's length) is the project's one prompt validator (models.prompt), so the
web demo accepts exactly what `main.py generate --prompt` accepts.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from models.prompt import PromptError, from_json, to_json

ROW_HEADERS = ["phase text", "start (s)", "end (s)"]
NO_AUDIO = "upload the speech audio (wav, flac or mp3)"


class WebInputError(ValueError):
    """An input fault, shown to the user as one message."""


def _number(value, row: int, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WebInputError(f"phase row {row}: {column} {value!r} is not a number of seconds") from None
    if not math.isfinite(number):
        raise WebInputError(f"phase row {row}: {column} must be a finite number of seconds")
    return number


def prompt_from_rows(base: str, rows, duration: float | None = None) -> dict:
    """Base text + rows [text, start, end] -> the structured prompt's JSON form (checked when a duration
    is given)."""
    if not base or not str(base).strip():
        raise WebInputError("the base prompt is empty: describe the person, the scene and how they speak")
    phases = []
    for number, row in enumerate(rows or [], start=1):
        cells = list(row) + [None] * (3 - len(row))
        text = "" if cells[0] is None else str(cells[0]).strip()
        if not text and all(c in (None, "") or (isinstance(c, float) and math.isnan(c)) for c in cells[1:3]):
            continue  # an empty row of the table
        if not text:
            raise WebInputError(f"phase row {number}: the phase text is empty")
        phases.append({"start": _number(cells[1], number, "start"), "end": _number(cells[2], number, "end"),
                       "text": text})
    if not phases:
        raise WebInputError("no phases: add at least one row (text, start, end), or fill them from the enhancer")
    prompt = {"version": 1, "base": str(base).strip(), "phases": phases}
    try:
        return to_json(from_json(prompt, source="phases", duration=duration))
    except PromptError as error:
        raise WebInputError(str(error)) from None


def rows_from_prompt(prompt: dict) -> tuple[str, list[list]]:
    """A structured prompt (JSON form) -> (base, rows) for the table."""
    return prompt["base"], [[p["text"], p["start"], p["end"]] for p in prompt["phases"]]


def read_audio(path: str | Path | None, sample_rate: int) -> np.ndarray:
    """The uploaded audio as generation reads it (inference/requests.py), faults as WebInputError."""
    from common.errors import AudioError
    from inference.requests import load_request_audio
    if not path:
        raise WebInputError(NO_AUDIO)
    try:
        return load_request_audio(path, sample_rate)
    except AudioError as error:
        raise WebInputError(str(error)) from None


def waveform_figure(wave: np.ndarray | None, sample_rate: int, rows, max_points: int = 4000):
    """Matplotlib figure: the waveform (min/max envelope) with each valid phase row's window shaded and
    numbered; rows that are not valid yet are left out (the table is being edited)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inference.plots import phase_colour
    fig, ax = plt.subplots(figsize=(9, 2.4), dpi=100)
    duration = 0.0
    if wave is not None and len(wave):
        duration = len(wave) / sample_rate
        step = max(1, len(wave) // max_points)
        n = len(wave) // step * step
        blocks = wave[:n].reshape(-1, step)
        t = (np.arange(blocks.shape[0]) + 0.5) * step / sample_rate
        ax.fill_between(t, blocks.min(1), blocks.max(1), color="0.45", linewidth=0)
    for k, row in enumerate(rows or [], start=1):
        try:
            text, start, end = str(row[0]).strip(), float(row[1]), float(row[2])
        except (TypeError, ValueError, IndexError):
            continue
        if not text or not end > start:
            continue
        ax.axvspan(start, end, color=phase_colour(k), alpha=0.3, linewidth=0)
        ax.text(start, 0.97, f" {k}: {text[:30]}", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                color=phase_colour(k), clip_on=True)
        duration = max(duration, end)
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    ax.set_title("phases over the audio", fontsize=9)
    fig.tight_layout()
    return fig


def enhance_rows(policy_dir: str | Path, short: str, wave: np.ndarray, sample_rate: int,
                 attributes: str = "", max_new_tokens: int = 256) -> tuple[str, list[list], str]:
    """The trained prompt enhancer (`main.py rl`) on a short prompt + the audio's speech timing ->
    (base, rows, the raw completion). A completion that is not a valid structured prompt is a fault."""
    from rl.downstream import enhanced_prompt
    from rl.evaluate import generate
    from rl.examples import EnhancerExample
    from rl.timing import audio_timing
    if not short or not short.strip():
        raise WebInputError("write a short prompt for the enhancer first, e.g. 'a cheerful host waves, then nods'")
    timing = audio_timing(wave, sample_rate)
    example = EnhancerExample("web", short.strip(), [a.strip() for a in attributes.split(";") if a.strip()],
                              "", [], timing)
    completion = generate(policy_dir, [example], max_new_tokens, batch=1, progress=False)[0]
    prompt = enhanced_prompt(completion, timing.duration)
    if prompt is None:
        raise WebInputError(f"the enhancer's answer is not a valid structured prompt; edit the rows by hand. "
                            f"It wrote: {completion[:300]!r}")
    base, rows = rows_from_prompt(prompt)
    return base, rows, completion
