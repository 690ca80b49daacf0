"""Tests for models.prompt: serialisations, validation messages, renderings."""

from __future__ import annotations

import json
import math

import pytest

from models.prompt import (
    PROMPT_JSON_SCHEMA,
    Phase,
    PromptError,
    StructuredPrompt,
    format_seconds,
    from_json,
    from_text,
    load_prompt,
    normalized_windows,
    phase_at,
    to_brief,
    to_global,
    to_json,
    to_text,
    validate,
)

BASE = "A person with short black hair in a red shirt. She sits in a bright studio."


def make_prompt(**overrides) -> StructuredPrompt:
    fields = dict(
        base=BASE,
        phases=(
            Phase(0.0, 1.5, "She raises her left hand.", "raise_hand"),
            Phase(1.5, 2.75, "She waves."),
            Phase(3.0, 4.0, "She nods.", "nod"),
        ),
        duration=4.0,
    )
    fields.update(overrides)
    return StructuredPrompt(**fields)


def make_json(**overrides) -> dict:
    obj = {
        "version": 1,
        "duration": 4.0,
        "base": BASE,
        "phases": [
            {"start": 0.0, "end": 2.0, "text": "raises hand", "action": "raise_hand"},
            {"start": 2.0, "end": 4.0, "text": "waves"},
        ],
    }
    obj.update(overrides)
    return obj


def expect_error(call, source: str, *fragments: str) -> str:
    """Runs `call`, expects a PromptError starting with `source` and containing every fragment."""
    with pytest.raises(PromptError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{source}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def rejects(prompt: StructuredPrompt, *fragments: str, **kwargs) -> str:
    """Validates, expects a PromptError containing every fragment; returns the message."""
    return expect_error(lambda: validate(prompt, source="clip_12.json", **kwargs), "clip_12.json", *fragments)


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


def test_json_round_trip_through_dict_and_text():
    prompt = validate(make_prompt())
    assert from_json(to_json(prompt)) == prompt
    assert from_json(json.dumps(to_json(prompt))) == prompt


def test_to_json_omits_optional_fields_when_absent():
    obj = to_json(validate(make_prompt(duration=None)))
    assert "duration" not in obj
    assert obj["version"] == 1
    assert "action" not in obj["phases"][1]
    assert obj["phases"][0]["action"] == "raise_hand"


def test_text_round_trip_drops_only_duration_and_action():
    prompt = validate(make_prompt())
    parsed = from_text(to_text(prompt), duration=prompt.duration)
    without_actions = tuple(Phase(p.start, p.end, p.text) for p in prompt.phases)
    assert parsed == StructuredPrompt(prompt.base, without_actions, prompt.duration)


def test_text_rendering_format():
    text = to_text(make_prompt())
    assert text.splitlines() == [
        f"Base: {BASE}",
        "Phase-1 [0.0s–1.5s]: She raises her left hand.",
        "Phase-2 [1.5s–2.75s]: She waves.",
        "Phase-3 [3.0s–4.0s]: She nods.",
    ]


def test_format_seconds_uses_one_decimal_unless_more_needed():
    assert format_seconds(2) == "2.0"
    assert format_seconds(1.25) == "1.25"
    assert float(format_seconds(1 / 3)) == 1 / 3


def test_text_accepts_lenient_syntax():
    text = "base:A person.\nPhase 1[0-1.5]:waves\n\n  Phase-2 [ 1.5s - 3s ] :  nods  "
    prompt = from_text(text)
    assert prompt.base == "A person."
    assert prompt.phases == (Phase(0.0, 1.5, "waves"), Phase(1.5, 3.0, "nods"))


def test_text_accepts_slash_separator_but_keeps_slash_in_content():
    text = "Base: A person in a black/white shirt. / Phase-1 [0.0s–2.0s]: waves / Phase 2 [2.0s–4.0s]: nods"
    prompt = from_text(text, duration=4.0)
    assert prompt.base == "A person in a black/white shirt."
    assert [p.text for p in prompt.phases] == ["waves", "nods"]
    assert prompt.duration == 4.0


def test_load_prompt_reads_json_and_txt(tmp_path):
    prompt = validate(make_prompt())
    json_path = tmp_path / "clip.json"
    json_path.write_text(json.dumps(to_json(prompt)), encoding="utf-8")
    txt_path = tmp_path / "clip.txt"
    txt_path.write_text(to_text(prompt), encoding="utf-8")
    assert load_prompt(json_path) == prompt
    assert load_prompt(txt_path, duration=4.0).phases[1].text == "She waves."


# --------------------------------------------------------------------------- #
# Validation: every rule names the phase and the reason
# --------------------------------------------------------------------------- #


def test_window_ending_before_start():
    prompt = make_prompt(phases=(Phase(0.0, 1.0, "raises"), Phase(1.5, 1.2, "waves")))
    message = rejects(prompt)
    assert message == "clip_12.json: phase 2 ('waves'): window [1.5s–1.2s] ends before it starts"


def test_empty_window():
    rejects(make_prompt(phases=(Phase(1.0, 1.0, "waves"),)), "phase 1 ('waves')", "[1.0s–1.0s] is empty")


def test_negative_start():
    rejects(make_prompt(phases=(Phase(-0.5, 1.0, "waves"),)), "phase 1 ('waves')", "starts before 0s")


def test_window_past_clip_end():
    prompt = make_prompt(phases=(Phase(3.0, 5.0, "waves"),))
    rejects(prompt, "phase 1 ('waves')", "window [3.0s–5.0s] ends after the clip (4.0s)")


def test_duration_argument_overrides_prompt_duration():
    prompt = make_prompt(phases=(Phase(0.0, 3.0, "waves"),), duration=None)
    rejects(prompt, "phase 1", "ends after the clip (2.0s)", duration=2.0)
    assert validate(prompt, duration=3.0).duration == 3.0


def test_end_within_tolerance_of_duration_is_accepted():
    prompt = make_prompt(phases=(Phase(0.0, 4.0 + 1e-9, "waves"),))
    assert validate(prompt).phases[0].end == pytest.approx(4.0)


def test_overlap_names_both_phases():
    prompt = make_prompt(phases=(Phase(0.0, 1.0, "a"), Phase(1.0, 2.0, "b"), Phase(1.8, 3.0, "c")))
    message = rejects(prompt)
    assert message == "clip_12.json: phase 3 ('c') overlaps phase 2: [1.8s–3.0s] starts before 2.0s"


def test_touching_windows_are_allowed():
    prompt = make_prompt(phases=(Phase(0.0, 2.0, "a"), Phase(2.0, 4.0, "b")))
    assert len(validate(prompt).phases) == 2


def test_phases_out_of_order():
    prompt = make_prompt(phases=(Phase(2.0, 3.0, "a"), Phase(0.0, 1.0, "b")))
    rejects(prompt, "phase 2 ('b')", "starts before phase 1", "ordered by start")


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1.0", True])
def test_non_finite_or_non_numeric_times(bad):
    rejects(make_prompt(phases=(Phase(bad, 1.0, "waves"),)), "phase 1 ('waves')", "start must be a finite number")


def test_empty_phase_text():
    prompt = make_prompt(phases=(Phase(0.0, 1.0, "a"), Phase(1.0, 2.0, "   ")))
    assert rejects(prompt) == "clip_12.json: phase 2: text is empty"


def test_empty_base():
    rejects(make_prompt(base="  \n"), "base block is empty")


def test_phase_count_limits():
    rejects(make_prompt(phases=()), "no phases")
    many = tuple(Phase(float(k), k + 0.5, f"step {k}") for k in range(3))
    rejects(make_prompt(phases=many, duration=None), "3 phases, at most 2", max_phases=2)


def test_bad_duration():
    rejects(make_prompt(duration=-1.0), "duration must be a positive number")


def test_long_phase_text_is_shortened_in_messages():
    text = "She slowly raises her left hand above her head while smiling warmly"
    message = rejects(make_prompt(phases=(Phase(2.0, 1.0, text),)))
    assert "phase 1 ('She slowly raises" in message
    assert "…')" in message and text not in message


def test_validate_normalises_text_and_numbers():
    prompt = validate(make_prompt(base="  A person. ", phases=(Phase(0, 2, " waves "),), duration=4))
    assert prompt == StructuredPrompt("A person.", (Phase(0.0, 2.0, "waves"),), 4.0)
    assert isinstance(prompt.phases[0].start, float)


# --------------------------------------------------------------------------- #
# JSON parsing errors
# --------------------------------------------------------------------------- #


def json_rejects(obj, *fragments: str) -> str:
    return expect_error(lambda: from_json(obj, source="x.json"), "x.json", *fragments)


def test_unknown_phase_field_suggests_closest_name():
    obj = make_json()
    obj["phases"][1] = {"start": 2.0, "end": 4.0, "txt": "waves"}
    assert json_rejects(obj) == "x.json: phase 2: unknown field 'txt' (did you mean 'text'?)"


def test_unknown_top_level_field_suggests_closest_name():
    json_rejects(make_json(durration=4.0), "unknown field 'durration'", "did you mean 'duration'?")


def test_unknown_field_without_close_match_lists_valid_fields():
    json_rejects(make_json(zzz=1), "unknown field 'zzz'", "valid fields: version, duration, base, phases")


def test_missing_required_fields():
    obj = make_json()
    del obj["base"]
    json_rejects(obj, "missing required field 'base'")
    obj = make_json()
    del obj["phases"][1]["end"]
    json_rejects(obj, "phase 2 ('waves')", "missing required field 'end'")


def test_wrong_types():
    json_rejects(make_json(base=3), "field 'base' must be a string, got int")
    json_rejects(make_json(phases={"start": 0}), "field 'phases' must be a list")
    json_rejects(make_json(duration="4s"), "field 'duration' must be a number")
    obj = make_json()
    obj["phases"][0]["start"] = "0.0"
    json_rejects(obj, "phase 1 ('raises hand')", "field 'start' must be a number", "str")
    obj = make_json()
    obj["phases"][0]["action"] = 7
    json_rejects(obj, "phase 1", "field 'action' must be a string or null")
    json_rejects(make_json(phases=["waves"]), "phase 1: expected an object, got str")
    json_rejects([1, 2], "expected a JSON object")


def test_wrong_version():
    json_rejects(make_json(version=2), "unsupported version 2")
    json_rejects(make_json(version="1"), "field 'version' must be the integer 1")


def test_malformed_json_reports_line_and_column():
    message = json_rejects('{\n  "version": 1,\n  "base": "x"\n  "phases": []\n}', "malformed JSON")
    assert "line 4, column 3" in message


def test_json_content_errors_are_validated_with_source():
    obj = make_json()
    obj["phases"][1]["end"] = 5.0
    json_rejects(obj, "phase 2 ('waves')", "ends after the clip (4.0s)")


def test_schema_documents_fields():
    assert PROMPT_JSON_SCHEMA["$schema"].startswith("http://json-schema.org/draft-07")
    assert set(PROMPT_JSON_SCHEMA["properties"]) == {"version", "duration", "base", "phases"}
    phase_schema = PROMPT_JSON_SCHEMA["properties"]["phases"]["items"]
    assert phase_schema["required"] == ["start", "end", "text"]
    assert PROMPT_JSON_SCHEMA["additionalProperties"] is False
    json.dumps(PROMPT_JSON_SCHEMA)  # must be plain JSON


# --------------------------------------------------------------------------- #
# Text parsing errors
# --------------------------------------------------------------------------- #


def text_rejects(text: str, *fragments: str) -> str:
    return expect_error(lambda: from_text(text, source="p.txt"), "p.txt", *fragments)


def test_text_missing_base_line():
    text_rejects("Phase-1 [0.0s–1.0s]: waves", "missing 'Base: ...' line")
    text_rejects("", "expected a 'Base: ...' line")


def test_text_phase_numbers_out_of_sequence():
    text_rejects(
        "Base: A person.\nPhase-1 [0.0s–1.0s]: a\nPhase-3 [1.0s–2.0s]: b",
        "line 3",
        "phase numbered 3 out of sequence, expected 2",
    )


def test_text_unparsable_line_is_quoted():
    text_rejects("Base: A person.\nPhase-1 0.0s to 1.0s: waves", "line 2", "cannot parse 'Phase-1 0.0s to 1.0s: waves'")


def test_text_duplicate_base_line():
    text_rejects("Base: A.\nBase: B.", "second 'Base:' line")


def test_text_content_errors_name_the_phase():
    text_rejects("Base: A person.\nPhase-1 [2.0s–1.0s]: waves", "phase 1 ('waves')", "ends before it starts")


# --------------------------------------------------------------------------- #
# File loading errors
# --------------------------------------------------------------------------- #


def test_load_prompt_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(PromptError, match="missing.json: cannot read prompt file"):
        load_prompt(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(PromptError, match=r"bad\.json: malformed JSON at line 1"):
        load_prompt(bad)
    other = tmp_path / "prompt.yaml"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(PromptError, match=r"prompt\.yaml: unsupported prompt file type"):
        load_prompt(other)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PromptError, match=r"bin\.txt: not valid UTF-8"):
        load_prompt(binary)


# --------------------------------------------------------------------------- #
# Renderings
# --------------------------------------------------------------------------- #


def test_global_prompt_keeps_content_without_time_markers():
    prompt = validate(make_prompt())
    flat = to_global(prompt)
    assert flat == (
        f"{BASE} First, she raises her left hand, then she waves, and finally she nods."
    )
    assert "[" not in flat and "Phase" not in flat and "s–" not in flat
    assert "raise_hand" not in flat  # action ids are metadata only


def test_global_prompt_with_one_and_two_phases():
    one = make_prompt(base="A person", phases=(Phase(0.0, 1.0, "waves"),))
    assert to_global(one) == "A person. Waves."
    two = make_prompt(phases=(Phase(0.0, 1.0, "TV turns on"), Phase(1.0, 2.0, "I wave!")))
    assert to_global(two).endswith("First, TV turns on, and then I wave.")


def test_brief_is_first_sentence_of_base():
    assert to_brief(make_prompt()) == "A person with short black hair in a red shirt."
    assert to_brief(make_prompt(base="A man, about 1.8 m tall")) == "A man, about 1.8 m tall."
    brief = to_brief(make_prompt())
    assert "[" not in brief and "waves" not in brief


def test_normalized_windows():
    prompt = make_prompt(phases=(Phase(0.0, 1.0, "a"), Phase(1.0, 4.0 + 1e-9, "b")))
    assert normalized_windows(prompt) == [(0.0, 0.25), (0.25, 1.0)]
    assert normalized_windows(prompt, duration=8.0)[0] == (0.0, 0.125)
    with pytest.raises(PromptError, match="duration unknown"):
        normalized_windows(make_prompt(duration=None))


def test_phase_at_window_edges():
    prompt = make_prompt(phases=(Phase(0.5, 1.0, "a"), Phase(1.0, 2.0, "b"), Phase(3.0, 4.0, "c")))
    assert phase_at(prompt, 0.0) == 0  # before the first phase: base only
    assert phase_at(prompt, 0.5) == 1  # start is inclusive
    assert phase_at(prompt, 0.999) == 1
    assert phase_at(prompt, 1.0) == 2  # shared boundary: the later phase wins
    assert phase_at(prompt, 2.0) == 0  # end is exclusive; gap -> base
    assert phase_at(prompt, 2.5) == 0
    assert phase_at(prompt, 3.999) == 3
    assert phase_at(prompt, 4.0) == 0
