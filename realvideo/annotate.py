"""Prep stages 3-5 (issue 16): analyse (speech activity, motion), filter (thresholds), annotate (prompts).

- analyse measures each clip once: speech segments from silero-vad (its PyPI package ships the weights;
  prep.vad=false falls back to an energy detector, librosa.effects.split) and the mean absolute frame
  difference (motion, 0..1); with prep.face_parser, region masks and the face track (realvideo/faces.py);
  with prep.pose_model, keypoints, body motion and a hands region (realvideo/pose.py);
  with prep.syncnet, SyncNet confidence / offset and optional audio re-alignment (realvideo/lipsync.py).
- filter applies prep.min_face_frames / min_face_size / max_sync_offset / min_sync_conf / min_speech_ratio /
  min_motion / max_motion to them, so thresholds can be changed and the filter rerun without decoding
  anything again; drops go to the ledger.
- annotate gives every kept clip a structured prompt in clip time: the manifest's prompt cut to the clip's
  window (phase pieces shorter than prep.min_phase_seconds dropped, times shifted to start at 0); when no
  phase is left, or the line has only a caption (or nothing), phases come from the speech segments
  ("speaks" / "pauses") under the prompt's base, the caption, or prep.default_base. Each record says which
  (`prompt_source`), so a data set's share of template prompts is visible in `prep --inspect`.
Trade-off: the speech template gives real talking-head clips the >= 1 phase the format needs, but it
teaches "when to talk", not actions; action phases must come from the manifest. With prep.vlm, a local
vision-language model describes the first frame of a clip whose line has no prompt or caption, and its
phrases become the base block (`vlm+speech`; common/vlm.py, the enhancer's attribute model).
"""
from __future__ import annotations

import numpy as np

from models.prompt import cut_window, from_json, to_global, to_json, validate

MAX_PHASES = 8
_VAD = None


def speech_segments(wave: np.ndarray, sample_rate: int, use_vad: bool) -> list[tuple[float, float]]:
    """Speech as [start, end) seconds."""
    if use_vad:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad

        global _VAD
        if _VAD is None:
            _VAD = load_silero_vad()
        if sample_rate != 16000:
            import librosa
            wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=16000)
        stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(wave, np.float32)), _VAD,
                                       sampling_rate=16000, return_seconds=True)
        return [(float(s["start"]), float(s["end"])) for s in stamps]
    import librosa  # the energy detector: frames within 30 dB of the loudest (as rl/timing.py)
    return [(s / sample_rate, e / sample_rate) for s, e in librosa.effects.split(wave, top_db=30.0)]


def motion_energy(frames: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames, uint8 (T, H, W, 3) -> [0, 1]."""
    if len(frames) < 2:
        return 0.0
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() / 255.0)


def analyse_clip(frames: np.ndarray, wave: np.ndarray, sample_rate: int, use_vad: bool) -> dict:
    seconds = len(wave) / sample_rate
    speech = speech_segments(wave, sample_rate, use_vad)
    covered = sum(min(e, seconds) - max(s, 0.0) for s, e in speech)
    return {"speech": [[round(s, 3), round(e, 3)] for s, e in speech], "speech_ratio": covered / seconds,
            "motion": motion_energy(frames), "speech_detector": "silero-vad" if use_vad else "energy"}


def filter_reason(measured: dict, prep_cfg) -> tuple[str, str] | None:
    """(reason, detail) when a clip fails a threshold, else None."""
    if "face_frames" in measured:  # analysed with a face parser
        if measured["face_frames"] < prep_cfg.min_face_frames:
            return "no_face", f"a face in {measured['face_frames']:.0%} of frames < prep.min_face_frames {prep_cfg.min_face_frames}"
        if measured["face_size"] < prep_cfg.min_face_size:
            return "face_too_small", f"face height {measured['face_size']:.3f} of the frame < prep.min_face_size {prep_cfg.min_face_size}"
    if "pose_motion" in measured:  # analysed with a pose model (realvideo/pose.py)
        if prep_cfg.min_pose_motion and measured["pose_motion"] < prep_cfg.min_pose_motion:
            return "low_body_motion", f"keypoint speed {measured['pose_motion']:.4f} < prep.min_pose_motion {prep_cfg.min_pose_motion}"
        if prep_cfg.max_pose_motion and measured["pose_motion"] > prep_cfg.max_pose_motion:
            return "high_body_motion", f"keypoint speed {measured['pose_motion']:.4f} > prep.max_pose_motion {prep_cfg.max_pose_motion}"
    if "sync_offset" in measured:  # analysed with SyncNet (realvideo/lipsync.py)
        if abs(measured["sync_offset"]) > prep_cfg.max_sync_offset:
            return "av_offset", f"SyncNet offset {measured['sync_offset']} frames > prep.max_sync_offset {prep_cfg.max_sync_offset}"
        if measured["sync_c"] < prep_cfg.min_sync_conf:
            return "low_sync", f"Sync-C {measured['sync_c']:.2f} < prep.min_sync_conf {prep_cfg.min_sync_conf}"
    if measured["speech_ratio"] < prep_cfg.min_speech_ratio:
        return "low_speech", f"speech {measured['speech_ratio']:.2f} < prep.min_speech_ratio {prep_cfg.min_speech_ratio}"
    if prep_cfg.min_motion and measured["motion"] < prep_cfg.min_motion:
        return "too_static", f"motion {measured['motion']:.4f} < prep.min_motion {prep_cfg.min_motion}"
    if prep_cfg.max_motion and measured["motion"] > prep_cfg.max_motion:
        return "too_much_motion", f"motion {measured['motion']:.4f} > prep.max_motion {prep_cfg.max_motion}"
    return None


def cut_prompt(prompt: dict, start: float, end: float, min_phase: float) -> dict | None:
    """The manifest prompt (source seconds) cut to [start, end) and shifted to clip time; None if no
    phase piece of at least `min_phase` seconds is left."""
    structured = from_json({"version": 1, "base": prompt["base"], "phases": prompt["phases"]},
                           source="manifest prompt")
    cut, _ = cut_window(structured, start, end, min_piece=min_phase)
    if not cut.phases:
        return None
    return to_json(validate(cut, source="cut prompt"))


def _merge_speech(speech, duration: float, min_gap: float) -> list[tuple[float, float]]:
    """Speech segments clipped to the clip, gaps shorter than `min_gap` closed."""
    out = []
    for s, e in sorted(speech):
        s, e = max(0.0, s), min(duration, e)
        if e <= s:
            continue
        if out and s - out[-1][1] < min_gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def speech_prompt(base: str, speech: list, duration: float, min_phase: float) -> dict:
    """Phases from speech activity: "speaks" on speech, "pauses" between (at most 8); pieces shorter than
    `min_phase` join their neighbour; a clip without speech gets one "stays silent" phase."""
    marks, t = [], 0.0
    for s, e in _merge_speech(speech, duration, min_phase):
        if e - s < min_phase:
            continue
        if s - t >= min_phase:
            marks.append((t, s, "pauses"))
        else:
            s = t  # a too-short leading gap joins the speech
        marks.append((s, e, "speaks"))
        t = e
    if marks and duration - t < min_phase:
        marks[-1] = (marks[-1][0], duration, marks[-1][2])  # a too-short tail joins the last phase
    elif marks:
        marks.append((t, duration, "pauses"))
    else:
        marks = [(0.0, duration, "stays silent")]
    while len(marks) > MAX_PHASES:  # merge the shortest neighbouring pair into one speaking phase
        k = min(range(len(marks) - 1), key=lambda i: marks[i + 1][1] - marks[i][0])
        marks[k: k + 2] = [(marks[k][0], marks[k + 1][1], "speaks")]
    phases = [{"start": round(s, 4), "end": round(e, 4), "text": text} for s, e, text in marks]
    return to_json(from_json({"version": 1, "duration": duration, "base": base, "phases": phases},
                             source="speech prompt", duration=duration))


def attribute_base(attributes: list[str]) -> str | None:
    """A local VLM's attribute phrases of the clip's first frame -> a base block in the enhancer template's
    words ("A person with <looks> in front of <place>, ..."; the last phrase is the background, as the
    question asks them in that order); None when it gave none."""
    phrases = [a for a in attributes if a][:6]
    if not phrases:
        return None
    looks = ", ".join(phrases[:-1]) if len(phrases) > 1 else phrases[0]
    place = f" in front of {phrases[-1]}" if len(phrases) > 1 else ""
    return f"A person with {looks}{place}, talking to the camera."


VIDEO_LLM_QUESTION = (
    "These are {n} frames, in order, of a {duration:.2f}-second video of a person talking. Describe it as JSON: "
    '{{"version": 1, "duration": {duration:.2f}, "base": "<who, what they look like, where>", "phases": '
    '[{{"start": <s>, "end": <s>, "text": "<what they do then>"}}, ...]}} with 1 to 8 phases covering the video '
    "in order, times in seconds. Answer with the JSON only.")


def video_llm_prompt(answer: str, duration: float) -> dict:
    """A video LLM's answer -> the clip's structured prompt (JSON form), validated by the prompt format;
    ValueError naming the fault when it is not one."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end <= start:
        raise ValueError(f"no JSON object in the answer {answer[:80]!r}")
    prompt = from_json(answer[start:end + 1], source="video LLM answer", duration=duration)
    return to_json(prompt)


def annotate_clip(entry_prompt: dict | None, caption: str | None, clip: dict, speech: list, prep_cfg,
                  attributes=None, video_llm=None) -> dict:
    """{"prompt": JSON for the clip, "prompt_source": manifest | video_llm | manifest_base+speech |
    caption+speech | vlm+speech | default+speech, "prompt_global": its flat rendering}.
    `video_llm`: a callable duration -> the video LLM's answer (asked when the line has no prompt; an answer
    that is not a valid structured prompt falls through to the next source); `attributes`: a callable giving
    the VLM's phrases (asked only when the line has neither prompt nor caption). Every fallback says why in
    "prompt_fallback"."""
    duration = clip["end"] - clip["start"]
    reasons, source = [], None  # why each model-made prompt was not used
    if entry_prompt is None and video_llm is not None:  # phases from the video itself, when the model can
        try:
            prompt = video_llm_prompt(video_llm(duration), duration)
            return {"prompt": prompt, "prompt_source": "video_llm", "prompt_global": to_global(from_json(prompt))}
        except (OSError, RuntimeError, ValueError) as error:  # PromptFormatError is a ValueError
            reasons.append(f"video LLM answer rejected: {type(error).__name__}: {error}")
    if entry_prompt is None and not caption and attributes is not None:
        try:
            caption = attribute_base(attributes())
            source = "vlm+speech" if caption else None
            if not caption:
                reasons.append("the VLM gave no attribute phrases")
        except (OSError, RuntimeError, ValueError) as error:
            reasons.append(f"VLM failed: {type(error).__name__}: {error}")
    prompt = None
    if entry_prompt is not None:
        prompt = cut_prompt(entry_prompt, clip["start"], clip["end"], prep_cfg.min_phase_seconds)
        source = "manifest" if prompt is not None else "manifest_base+speech"
    if prompt is None:
        base = entry_prompt["base"] if entry_prompt is not None else (caption or prep_cfg.default_base)
        source = source or ("caption+speech" if caption else "default+speech")
        prompt = speech_prompt(base, [tuple(s) for s in speech], duration, prep_cfg.min_phase_seconds)
    out = {"prompt": prompt, "prompt_source": source, "prompt_global": to_global(from_json(prompt))}
    return out | ({"prompt_fallback": "; ".join(reasons)} if reasons else {})
