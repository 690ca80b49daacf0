"""`main.py app`: the web demo (Gradio) around `main.py generate` (issue 17, Deliver 3).

Upload a reference image and the speech; write the base prompt and edit the timed phases as rows
(text, start, end), drawn over the audio's waveform as they are typed, or fill them from the trained prompt
enhancer (`main.py rl`) given a short prompt; Generate runs the same code as `main.py generate` (chained
windows for long audio, one mp4 with the audio, the Fig. 4 phase-attention plot) with a progress bar, and
shows the video and the plot. Every input fault is a message in the page (gr.Error), never a traceback.

    python main.py app -e demo [--weights runs/demo/fit] [--enhancer runs/demo/rl/grpo/final] [--port 7860]

Trade-off: one generator is built at start and requests run one at a time (Gradio's queue), which is what a
single CPU or GPU can serve; outputs go to runs/<name>/app/<n>/ so nothing a user made is overwritten.
"""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from inference.web_inputs import (
    NO_AUDIO,
    ROW_HEADERS,
    WebInputError,
    enhance_rows,
    prompt_from_rows,
    read_audio,
    waveform_figure,
)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the demo

EXAMPLE_BASE = ("A person with short dark hair in a blue shirt stands in front of a plain wall. "
                "They speak in a friendly manner.")
EXAMPLE_ROWS = [["waves at the camera", 0.3, 1.5], ["nods", 2.0, 3.2], ["", None, None]]


class WebDemo:
    """The generator and the handlers behind the page (testable without a browser)."""

    def __init__(self, cfg, weights: str | Path | None, enhancer: str | Path | None, out_root: Path):
        from inference.generate import Generator
        self.generator = Generator(cfg, weights, progress=True)
        self.cfg = self.generator.cfg
        self.data_cfg = cfg.data  # the omegaconf section the SynthAvatar cache reads
        self.enhancer = Path(enhancer) if enhancer else None
        self.out_root = Path(out_root)
        self.counter = itertools.count(1)
        self._audio = (None, None)  # (path, waveform) of the last upload: redraws do not decode it again

    def _wave(self, audio_path):
        """The uploaded audio, decoded once per upload (WebInputError on a fault)."""
        if self._audio[0] != audio_path:
            self._audio = (audio_path, read_audio(audio_path, int(self.cfg.data.sample_rate)))
        return self._audio[1]

    def example(self) -> list | None:
        """[reference png, speech wav, base, rows] of the first SynthAvatar test clip at 3x its length (so
        the chained windows show), written under the app's output dir; None for other data sources."""
        if self.cfg.data.kind != "synthavatar":
            return None
        import json

        import numpy as np
        import soundfile as sf
        from PIL import Image

        from synthavatar.dataset import ensure_split, load_clip
        clip = load_clip(ensure_split(self.data_cfg, "test", progress=False)[0])
        folder = self.out_root / "example"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(clip["video"][0]).save(folder / "reference.png")
        sf.write(folder / "speech.wav", np.concatenate([clip["audio"]] * 3), int(self.cfg.data.sample_rate),
                 subtype="FLOAT")
        prompt, seconds = clip["prompt"], len(clip["audio"]) / int(self.cfg.data.sample_rate)
        # the speech repeats, so do its phases (at most the 8 a prompt holds)
        rows = [[p["text"], round(p["start"] + k * seconds, 2), round(p["end"] + k * seconds, 2)]
                for k in range(3) for p in prompt["phases"]][:8]
        (folder / "prompt.json").write_text(json.dumps(prompt, indent=1))
        return [str(folder / "reference.png"), str(folder / "speech.wav"), prompt["base"], rows]

    def preview(self, audio_path, rows):
        """The waveform with the phase rows over it (redrawn on every edit)."""
        try:
            wave = self._wave(audio_path) if audio_path else None
        except WebInputError:
            wave = None  # the Generate button reports the audio's fault
        return waveform_figure(wave, int(self.cfg.data.sample_rate), rows)

    def fill(self, short: str, attributes: str, audio_path):
        import gradio as gr
        if self.enhancer is None or not self.enhancer.is_dir():
            raise gr.Error("no prompt enhancer: start the app with --enhancer DIR (a policy trained by "
                           "`main.py rl`, e.g. runs/NAME/rl/grpo/final)")
        try:
            wave = self._wave(audio_path)
            base, rows, _ = enhance_rows(self.enhancer, short, wave, int(self.cfg.data.sample_rate), attributes)
        except WebInputError as error:
            raise gr.Error(str(error)) from None
        return base, rows

    def generate(self, reference, audio_path, base, rows):
        """-> (mp4 path, phase-attention png or None, a status line)."""
        import gradio as gr

        from inference.batch import generate_requests
        from inference.requests import INPUT_ERRORS, load_request
        if not reference:
            raise gr.Error("upload a reference image (png or jpg): the person to animate")
        if not audio_path:
            raise gr.Error(NO_AUDIO)
        try:
            prompt = prompt_from_rows(base, rows)  # load_request reads the audio and checks the windows on it
            request = load_request(Path(reference), Path(audio_path), prompt, self.cfg.data, "web",
                                   source="web demo")
        except (WebInputError, *INPUT_ERRORS) as error:
            raise gr.Error(str(error)) from None
        out_dir = self.out_root / f"{next(self.counter):04d}-{time.strftime('%H%M%S')}"
        started = time.perf_counter()
        try:
            written, failed = generate_requests(self.generator, [request], out_dir, progress=True)
        except INPUT_ERRORS as error:  # e.g. audio too short for the codec
            raise gr.Error(str(error)) from None
        if failed:
            raise gr.Error(f"generation failed: {failed[0]['reason']}")
        plot = out_dir / "web_phase_attention.png"
        plan = self.generator.window_plan(request.num_frames)
        windows = "" if plan is None else f", {len(plan.starts)} windows"
        status = (f"{request.num_frames / float(self.cfg.data.fps):.1f} s of video{windows} in "
                  f"{time.perf_counter() - started:.1f} s; saved in {out_dir}")
        return str(written[0]), str(plot) if plot.is_file() else None, status


def build_app(demo: WebDemo, example: list | None = None):
    """The page; `example`: inputs [reference, audio, base, rows] offered as a one-click example."""
    import gradio as gr
    with gr.Blocks(title="ActSync: timed actions for a talking avatar") as app:
        gr.Markdown("## ActSync — a talking avatar that performs timed actions\nUpload a reference image and "
                    "speech, describe the person, and place each action on the audio's timeline.")
        with gr.Row():
            reference = gr.Image(type="filepath", label="reference image", height=240)
            audio = gr.Audio(type="filepath", label="speech (wav / flac / mp3)")
        base = gr.Textbox(label="base prompt (who, where, how they speak)", value=EXAMPLE_BASE, lines=2)
        rows = gr.Dataframe(headers=ROW_HEADERS, datatype=["str", "number", "number"], value=EXAMPLE_ROWS,
                            type="array", col_count=(3, "fixed"), row_count=(3, "dynamic"),
                            label="phases: one row per timed action (seconds)", interactive=True)
        timeline = gr.Plot(value=demo.preview(None, EXAMPLE_ROWS), label="phases over the waveform")
        with gr.Row():
            short = gr.Textbox(label="short prompt for the enhancer", placeholder="a cheerful host waves, then nods",
                               scale=3)
            attributes = gr.Textbox(label="reference attributes (optional, ; separated)", scale=2)
            fill = gr.Button("fill phases from the enhancer", scale=1)
        if example is not None:
            gr.Examples([example], [reference, audio, base, rows], label="a SynthAvatar example (held-out test clip)")
        run = gr.Button("Generate", variant="primary")
        status = gr.Markdown()
        with gr.Row():
            video = gr.Video(label="generated video")
            attention = gr.Image(label="phase attention (ActAvatar Fig. 4)", type="filepath")

        track = gr.Progress(track_tqdm=True)  # Gradio reads the progress bar from this default argument

        def generate(reference, audio, base, rows, progress=track):  # Gradio fills `progress`
            return demo.generate(reference, audio, base, rows)

        for trigger in (audio.change, rows.change):
            trigger(demo.preview, [audio, rows], timeline)
        fill.click(demo.fill, [short, attributes, audio], [base, rows], api_name="fill")
        run.click(generate, [reference, audio, base, rows], [video, attention, status], api_name="generate")
    return app


def cmd_app(cfg, args) -> int:
    from system.weights import resolve_weights
    weights = getattr(args, "weights", None) or str(Path(cfg.run.output_dir) / cfg.run.name / "fit")
    resolve_weights(weights)  # one line naming the path, before the model build
    enhancer = getattr(args, "enhancer", None)
    if enhancer is None:
        default = Path(cfg.run.output_dir) / cfg.run.name / "rl" / "grpo" / "final"
        enhancer = default if default.is_dir() else None
    demo = WebDemo(cfg, weights, enhancer, Path(cfg.run.output_dir) / cfg.run.name / "app")
    app = build_app(demo, demo.example())
    print(f"app: weights {weights}; prompt enhancer {enhancer or 'none (--enhancer DIR)'}")
    app.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, share=False,
                                                  show_error=True)
    return 0
