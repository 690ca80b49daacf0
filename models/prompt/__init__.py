"""The structured prompt of ActAvatar (base block + phase blocks bound to time windows), part of the core.

format.py: data model, validation, JSON form; text_form.py: the text form and prompt files; render.py: the flat/brief/windowed renderings.
Import from here: `from models.prompt import StructuredPrompt, load_prompt, to_global, ...`.
"""
from models.prompt.format import (
                                  PROMPT_JSON_SCHEMA,
                                  PROMPT_JSON_VERSION,
                                  Phase,
                                  PromptError,
                                  StructuredPrompt,
                                  format_seconds,
                                  from_json,
                                  to_json,
                                  validate,
)
from models.prompt.render import cut_window, normalized_windows, phase_at, to_brief, to_global
from models.prompt.text_form import from_text, load_prompt, to_text

__all__ = ["PROMPT_JSON_SCHEMA", "PROMPT_JSON_VERSION", "Phase", "PromptError", "StructuredPrompt", "cut_window", "format_seconds",
           "from_json", "from_text", "load_prompt", "normalized_windows", "phase_at", "to_brief", "to_global",
           "to_json", "to_text", "validate"]
