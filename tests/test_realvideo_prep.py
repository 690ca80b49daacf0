"""Issue 16: manifest, importers, `data export` and `main.py prep` (probe / segment / analyse / filter / annotate)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataError
from configs.loader import load_config
from realvideo import ledger
from realvideo.annotate import cut_prompt, speech_prompt
from realvideo.manifest import import_diffsynth, import_videox, read_manifest, write_manifest
from realvideo.segment import bucket_size, clip_frames, plan_clips

ROOT = Path(__file__).resolve().parents[1]
PROMPT = {"version": 1, "base": "A man talks.", "phases": [{"start": 0.5, "end": 2.0, "text": "waves"},
                                                          {"start": 5.0, "end": 7.0, "text": "nods"}]}


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_manifest_reads_resolves_and_round_trips(tmp_path):
    m = _write(tmp_path / "m.jsonl", ["# comment", {"video": "v/a.mp4", "prompt": PROMPT, "speaker": "s1"}, "",
                                     {"video": "/abs/b.mp4", "name": "bee", "split": "val", "caption": "x",
                                      "segments": [[0, 4], [5, 9.5]]}])
    a, b = read_manifest(m)
    assert a.name == "a" and a.video == str(tmp_path / "v/a.mp4") and a.line == 2 and a.prompt["phases"][1]["text"] == "nods"
    assert b.name == "bee" and b.split == "val" and b.segments == ((0.0, 4.0), (5.0, 9.5)) and b.video == "/abs/b.mp4"
    out = write_manifest(tmp_path / "copy.jsonl", [a, b])
    assert json.loads(out.read_text().splitlines()[0])["video"] == "v/a.mp4"  # relative again
    assert read_manifest(out) == [a.__class__(**{**a.__dict__, "line": 1}), b.__class__(**{**b.__dict__, "line": 2})]


@pytest.mark.parametrize("line, fault", [
    ("{not json", "invalid JSON"),
    ({"video": "a.mp4", "vidoe": 1}, "unknown field(s) ['vidoe']"),
    ({"name": "x"}, "missing required field 'video'"),
    ({"video": "a.mp4", "split": "dev"}, "split must be one of"),
    ({"video": "a.mp4", "segments": [[3, 2]]}, "segment 1 must be [start, end]"),
    ({"video": "a.mp4", "segments": [[0, 4], [3, 6]]}, "overlaps"),
    ({"video": "a.mp4", "prompt": {"version": 1, "base": "b", "phases": [{"start": 2, "end": 1, "text": "t"}]}},
     "bad prompt"),
    ({"video": "a b/../c d.mp4"}, "name 'c d'"),
])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, fault):
    m = _write(tmp_path / "m.jsonl", [{"video": "ok.mp4"}, line])
    with pytest.raises(DataError) as err:
        read_manifest(m)
    assert str(err.value).startswith(f"{m} line 2:") and fault in str(err.value)


def test_duplicate_names_are_refused(tmp_path):
    m = _write(tmp_path / "m.jsonl", [{"video": "x/a.mp4"}, {"video": "y/a.mp4"}])
    with pytest.raises(DataError, match="line 2: name 'a' is already used on line 1"):
        read_manifest(m)


def test_importers_for_diffsynth_and_videox(tmp_path):
    (tmp_path / "metadata.csv").write_text("video,prompt,input_audio\nclips/a.mp4,A woman speaks.,a.wav\n"
                                           "clips/b.mp4,,\n")
    a, b = import_diffsynth(tmp_path / "metadata.csv")
    assert (a.caption, a.audio, b.caption, b.audio) == ("A woman speaks.", str(tmp_path / "a.wav"), None, None)
    (tmp_path / "metadata.json").write_text(json.dumps([
        {"file_path": "v/c.mp4", "text": "A man.", "type": "video", "audio_path": "c.wav"},
        {"file_path": "i/d.png", "text": "img", "type": "image"}]))
    entries, images = import_videox(tmp_path / "metadata.json")
    assert images == 1 and [e.name for e in entries] == ["c"] and entries[0].audio == str(tmp_path / "c.wav")
    (tmp_path / "bad.csv").write_text("file,text\nx.mp4,y\n")
    with pytest.raises(DataError, match="needs a 'video' column"):
        import_diffsynth(tmp_path / "bad.csv")


def test_clip_geometry_and_plan():
    assert clip_frames(4.0, 25) == 97 and clip_frames(5.0, 24) == 117 and clip_frames(1.0, 25) == 25
    assert bucket_size(48, 64, 64, 32) == (64, 64) and bucket_size(720, 1280, 512, 32) == (288, 512)  # 16:9 exactly
    h, w = bucket_size(1280, 720, 512, 32)
    assert h % 32 == 0 and w % 32 == 0 and h * w <= 512 * 512 and h > w
    starts, short = plan_clips([(0.0, 9.0), (9.0, 10.0)], usable=9.5, seconds=3.88)
    assert starts == pytest.approx([0.0, 3.88]) and short == [(9.0, 9.5)]


def test_cut_prompt_moves_phases_to_clip_time():
    cut = cut_prompt(PROMPT, 1.0, 4.88, min_phase=0.2)
    assert cut["duration"] == pytest.approx(3.88) and cut["phases"] == [{"start": 0.0, "end": 1.0, "text": "waves"}]
    assert cut_prompt(PROMPT, 2.5, 4.9, 0.2) is None  # no phase inside
    assert cut_prompt(PROMPT, 1.85, 5.73, 0.2)["phases"] == [{"start": 3.15, "end": 3.88, "text": "nods"}]


def test_speech_prompt_covers_the_clip_without_gaps():
    p = speech_prompt("A man.", [(0.05, 1.0), (1.1, 2.0), (2.8, 3.5)], 3.88, 0.2)
    spans = [(q["start"], q["end"], q["text"]) for q in p["phases"]]
    assert spans == [(0.0, 2.0, "speaks"), (2.0, 2.8, "pauses"), (2.8, 3.5, "speaks"),
                     (3.5, 3.88, "pauses")]
    assert speech_prompt("A.", [], 3.88, 0.2)["phases"] == [{"start": 0.0, "end": 3.88, "text": "stays silent"}]
    many = speech_prompt("A.", [(0.4 * i + 0.3, 0.4 * i + 0.5) for i in range(9)], 3.88, 0.1)
    assert len(many["phases"]) <= 8 and many["phases"][-1]["end"] == 3.88


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """SynthAvatar exported with the odd files, then every prep stage run in two shards."""
    from realvideo.export import export_synthavatar
    from realvideo.prep import STAGES, run_stage
    from tests.support import tiny_models

    tmp = tmp_path_factory.mktemp("real")
    parser = tiny_models.face_parser(tmp / "parser")  # random weights: masks of no meaning, the right format
    sync = tiny_models.syncnet(tmp / "syncnet.model")
    pose = tiny_models.pose_model(tmp / "pose")
    cfg = load_config(["smoke"], [f"data.manifest={tmp / 'export/manifest.jsonl'}", f"data.root={tmp / 'prep'}",
                                  f"prep.face_parser={parser}", "prep.face_parser_size=64", f"prep.syncnet={sync}",
                                  f"prep.pose_model={pose}",
                                  "prep.max_sync_offset=15", "prep.realign_audio=false"])
    export_synthavatar(cfg.data, tmp / "export", ("train", "val"), max_clips=2, odd=True, progress=False)
    summaries = {}
    for stage in STAGES:
        run_stage(cfg, stage, "1/2", progress=False)
        summaries[stage] = run_stage(cfg, stage, "0/2", progress=False)
    return cfg, tmp, summaries


def test_every_odd_file_ends_in_the_ledger_with_its_reason(prepared):
    cfg, tmp, _ = prepared
    expected = json.loads((tmp / "export/expected.json").read_text())
    got = {r["name"]: (None if r["kept"] else r["reason"]) for r in ledger.records(cfg.data.root, "probe")}
    assert got == expected
    counts = ledger.reason_counts(cfg.data.root, ["probe"])["probe"]
    assert sum(counts.values()) == sum(v is not None for v in expected.values())


def test_segment_makes_exact_clips(prepared):
    from common.audio_io import load_audio
    from common.video_io import read_video

    cfg, tmp, _ = prepared
    seg = {r["name"]: r for r in ledger.records(cfg.data.root, "segment")}
    assert len(seg["odd_two_scenes"]["clips"]) == 2 and seg["odd_two_scenes"]["scenes"][1][0] == pytest.approx(4.0)
    fps30 = seg["odd_fps30"]["clips"][0]
    assert fps30["source_frames"] == [0, 115]  # 30 -> 25 fps: frame k shows source frame floor(k * 30 / 25)
    clip = read_video(Path(cfg.data.root) / "clips" / f"{fps30['clip']}.mp4", sample_rate=None)
    assert clip.frames.shape == (97, 64, 64, 3) and clip.fps == 25
    wave = load_audio(Path(cfg.data.root) / "clips" / f"{fps30['clip']}.wav", 16000)
    assert wave.size == round(97 / 25 * 16000)
    # the clip's frames are the source's (H.264 twice: a loose bound)
    source = read_video(tmp / "export/videos/train_00000.mp4", sample_rate=None).frames
    first = read_video(Path(cfg.data.root) / "clips" / "train_00000__0000.mp4", sample_rate=None).frames
    assert np.abs(first.astype(int) - source[:97].astype(int)).mean() < 4


def test_stages_resume_and_annotate_in_clip_time(prepared):
    from realvideo.prep import inspect, run_stage

    cfg, _, summaries = prepared
    assert summaries["annotate"]["kept"] == 9 and summaries["annotate"]["rejected"] == 0
    again = run_stage(cfg, "segment", progress=False)
    assert again.get("done", 0) == 0 and again["skipped"] == summaries["segment"]["kept"]
    notes = {r["name"]: r for r in ledger.records(cfg.data.root, "annotate")}
    second = notes["odd_two_scenes__0001"]  # the second scene's phases, shifted back to clip time
    assert second["prompt_source"] == "manifest" and second["prompt"]["duration"] == pytest.approx(3.88)
    assert 0 <= second["prompt"]["phases"][0]["start"] < 3.88 and all(
        p["end"] <= 3.88 + 1e-6 for p in second["prompt"]["phases"])
    text = inspect(cfg)
    assert "train 64x64 x 97 frames: 7 clips" in text and "missing_file 1" in text and "rotated 1" in text


def test_prep_without_a_manifest_is_one_line(tmp_path, capsys):
    import main
    assert main.main(["prep", "-e", "smoke", f"data.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "data.manifest" in err


def test_bucket_sampler_batches_one_bucket_and_resumes_exactly():
    from datamodules.samplers import BucketStepSampler

    buckets = [(64, 64, 97)] * 7 + [(32, 64, 97)] * 5 + [(64, 32, 97)] * 2
    full = list(BucketStepSampler(buckets, 3, total_steps=20, seed=1))
    assert len(full) == 20 and all(len({buckets[i] for i in batch}) == 1 for batch in full)
    resumed = list(BucketStepSampler(buckets, 3, total_steps=20, seed=1, start_step=lambda: 13))
    assert resumed == full[13:]
    epoch = BucketStepSampler(buckets, 3, 1)._epoch(0)
    assert sorted(len(b) for b in epoch) == [2, 3, 3, 3]  # 7 -> 2 batches, 5 -> 1, the 2-clip bucket kept whole
    ranks = [list(BucketStepSampler(buckets, 3, 4, seed=1, rank=r, world=2)) for r in (0, 1)]
    assert [b for pair in zip(*ranks) for b in pair] == list(BucketStepSampler(buckets, 3, 8, seed=1))


def test_prepared_clips_train_generate_and_evaluate_through_the_real_video_source(prepared, tmp_path, capsys):
    """export -> prep (tiny face parser + pose model + SyncNet) -> `main.py fit` with data.kind=real (region masks feeding
    SyncDreamer's localisation loss, conditions cached) -> generate -> evaluate with random-weight metric models."""
    import main
    from datamodules.real_video import RealVideoSource
    from tests.support import tiny_models

    cfg, tmp, _ = prepared
    source = RealVideoSource(cfg.data)
    train = source.dataset("train")
    assert len(train) == 7 and train.buckets == [(64, 64, 97)] * 7
    batch = source.collate([train[0], train[1]])
    assert batch.video.shape == (2, 97, 3, 64, 64) and batch.audio.shape == (2, round(97 / 25 * 16000))
    assert batch.ground_truth["phase_mask"].any() and (batch.ground_truth["phase_actions"] >= -1).all()
    assert torch_equal(batch.reference, batch.video[:, 0])
    assert batch.region_names == ("eyes", "mouth", "hair", "face", "hands")  # parser + pose: SynthAvatar's five
    assert batch.region_masks.shape == (2, 97, 5, 64, 64) and batch.region_masks[:, :, 4].any()
    real = ["-e", "smoke", "data.kind=real", f"data.root={cfg.data.root}", f"run.output_dir={tmp_path}",
            f"train.condition_cache={tmp_path / 'conditions'}"]
    assert main.main(["prep", *real, "--stage", "cache", "--quiet"]) == 0  # the encoders once, before training
    cache = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cache["clips"] == 7 and cache["files"] == ["train.safetensors"] and cache["bytes_per_clip"] > 0
    made = (Path(cache["directory"]) / "train.safetensors").stat().st_mtime_ns
    run = subprocess.run([sys.executable, "main.py", "fit", *real, "train.max_steps=2", "train.logger.kind=csv",
                          "train.sample_clips=0", "model.visual.enabled=true", "model.visual.loc_weight=0.4"],
                         cwd=ROOT, capture_output=True, text=True)  # the default regions, hands included
    assert run.returncode == 0, run.stderr[-2000:]
    assert list((tmp_path / "smoke" / "fit").rglob("*.ckpt"))
    assert (Path(cache["directory"]) / "train.safetensors").stat().st_mtime_ns == made  # fit used prep's cache
    visual = ["model.visual.enabled=true"]
    # generate and evaluate in this process (each subprocess costs ~8 s of imports)
    assert main.main(["generate", *real, *visual, "--split", "val", "--out", str(tmp_path / "videos"),
                      "sample.attention_plot=false"]) == 0
    models = tiny_models.all_metric_models(tmp_path / "metric_models")
    assert main.main(["evaluate", *real, "--split", "val", "--videos", str(tmp_path / "videos"),
                      "--out", str(tmp_path / "eval"), *[f"eval.real.{k}={v}" for k, v in models.items()]]) == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    generated, truth = result["table"][str(tmp_path / "videos")], result["table"]["ground truth"]
    for key in ("sync_c", "sync_d", "abs_offset", "csim", "psnr", "ssim", "fid", "fvd"):
        assert key in generated, key
    assert "psnr" not in truth and truth["csim"][0] > generated["csim"][0]  # the truth is its own ceiling
    assert result["parameters"]["models"]["syncnet"]["sha256"] and not result["parameters"]["skipped"]
    assert "ground truth" in (tmp_path / "eval" / "metrics.md").read_text()


def test_real_source_without_prep_is_one_line(tmp_path, capsys):
    import main
    assert main.main(["fit", "-e", "smoke", "data.kind=real", f"data.root={tmp_path}", f"run.output_dir={tmp_path}"]) == 2
    assert "annotate.jsonl: missing; run `main.py prep" in capsys.readouterr().err


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def test_annotate_uses_vlm_attributes_only_without_prompt_or_caption_and_records_fallbacks():
    from realvideo.annotate import annotate_clip
    from realvideo.config import PrepConfig

    clip, speech, prep = {"start": 0.0, "end": 3.88}, [[0.5, 2.0]], PrepConfig()
    asked = []

    def vlm():
        asked.append(1)
        return ["short black hair", "a red shirt", "a white wall", ""]

    out = annotate_clip(None, None, clip, speech, prep, vlm)
    assert out["prompt_source"] == "vlm+speech" and "prompt_fallback" not in out
    assert out["prompt"]["base"] == "A person with short black hair, a red shirt in front of a white wall, talking to the camera."
    assert [p["text"] for p in out["prompt"]["phases"]] == ["pauses", "speaks", "pauses"]
    assert annotate_clip(None, "A woman talks.", clip, speech, prep, vlm)["prompt_source"] == "caption+speech"
    assert len(asked) == 1  # a caption wins without asking the model

    def broken():
        raise RuntimeError("out of memory")

    failed = annotate_clip(None, None, clip, speech, prep, broken)
    assert failed["prompt_source"] == "default+speech" and "RuntimeError: out of memory" in failed["prompt_fallback"]
    empty = annotate_clip(None, None, clip, speech, prep, lambda: [])
    assert empty["prompt_fallback"] == "the VLM gave no attribute phrases"
    assert failed["prompt"]["base"] == prep.default_base


def test_changed_inputs_are_redone_and_removed_lines_swept(tmp_path):
    """A record is reused only for the same inputs: a touched video redoes its items, a threshold change
    redoes the filter alone, a line removed from the manifest leaves every stage's kept list."""
    import os

    from realvideo.export import export_synthavatar
    from realvideo.prep import run_stage

    manifest = tmp_path / "export/manifest.jsonl"
    cfg = load_config(["smoke"], [f"data.manifest={manifest}", f"data.root={tmp_path / 'prep'}", "prep.vad=false",
                                  "data.duration=1.2"])
    export_synthavatar(cfg.data, tmp_path / "export", ("train",), max_clips=2, odd=False, progress=False)
    stages = ("probe", "segment", "analyse", "filter", "annotate")
    first = {s: run_stage(cfg, s, progress=False) for s in stages}
    assert all(first[s].get("done") == 2 and first[s]["kept"] == 2 for s in stages)
    cfg.prep.min_motion = 1e-6  # a filter threshold: the filter and what reads it are redone, nothing before
    again = {s: run_stage(cfg, s, progress=False) for s in stages}
    assert [again[s].get("done", 0) for s in stages] == [0, 0, 0, 2, 2]
    video = tmp_path / "export/videos/train_00001.mp4"
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    touched = {s: run_stage(cfg, s, progress=False) for s in stages}  # re-encoded clips: everything after redone
    assert [touched[s].get("done", 0) for s in stages] == [1, 1, 1, 1, 1] and touched["probe"]["skipped"] == 1
    first_line = json.loads(manifest.read_text().splitlines()[0])
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([json.dumps(first_line | {"caption": "A new caption."}), *lines[1:]]) + "\n")
    edited = {s: run_stage(cfg, s, progress=False) for s in stages}  # an edited prompt / caption: annotate only
    assert [edited[s].get("done", 0) for s in stages] == [0, 0, 0, 0, 1]
    lines = manifest.read_text().splitlines()
    manifest.write_text(lines[0] + "\n")
    swept = {s: run_stage(cfg, s, progress=False) for s in stages}
    assert [swept[s]["stale"] for s in stages] == [1, 1, 1, 1, 1] and swept["annotate"]["kept"] == 1
    assert (tmp_path / "prep/probe.stale/train_00001.json").is_file()
    assert len((tmp_path / "prep/annotate.jsonl").read_text().splitlines()) == 1


def test_annotate_takes_a_video_llm_prompt_only_when_it_validates():
    from realvideo.annotate import VIDEO_LLM_QUESTION, annotate_clip
    from realvideo.config import PrepConfig

    clip, speech, prep = {"start": 0.0, "end": 3.88}, [[0.5, 2.0]], PrepConfig()
    good = ('Sure! {"version": 1, "duration": 3.88, "base": "A man in a grey suit.", "phases": ['
            '{"start": 0, "end": 2.0, "text": "He waves."}, {"start": 2.0, "end": 3.88, "text": "He nods."}]}')
    out = annotate_clip(None, "A man talks.", clip, speech, prep, video_llm=lambda duration: good)
    assert out["prompt_source"] == "video_llm" and [p["text"] for p in out["prompt"]["phases"]] == ["He waves.", "He nods."]
    outside = good.replace('"end": 3.88, "text": "He nods."', '"end": 9.0, "text": "He nods."')
    bad = annotate_clip(None, "A man talks.", clip, speech, prep, video_llm=lambda duration: outside)
    assert bad["prompt_source"] == "caption+speech" and bad["prompt_fallback"].startswith("video LLM answer rejected")
    none = annotate_clip(None, None, clip, speech, prep, lambda: ["a hat", "a garden"], lambda d: "I cannot tell.")
    assert none["prompt_source"] == "vlm+speech" and "no JSON object" in none["prompt_fallback"]
    assert "3.88-second" in VIDEO_LLM_QUESTION.format(n=8, duration=3.88)
