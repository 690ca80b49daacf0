"""The web demo (`main.py app`, inference/web_demo.py): phase rows <-> prompt with one-line faults, the
waveform figure, and (slow) the served app driven through gradio_client and screenshotted by headless
Chromium. Set ACTSYNC_SCREENSHOT=docs/web_demo.png to keep the screenshot (README)."""
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from inference.web_inputs import WebInputError, prompt_from_rows, rows_from_prompt, waveform_figure

BASE = "A person in a red shirt. They speak calmly."


def test_rows_make_the_prompt_generate_reads_and_blank_rows_are_ignored():
    rows = [["waves", 0.2, 1.0], ["", None, None], ["nods", "1.5", 2.5], [None, float("nan"), None]]
    prompt = prompt_from_rows(BASE, rows, duration=3.0)
    assert prompt["duration"] == 3.0 and [(p["text"], p["start"], p["end"]) for p in prompt["phases"]] == [
        ("waves", 0.2, 1.0), ("nods", 1.5, 2.5)]
    assert rows_from_prompt(prompt) == (BASE, [["waves", 0.2, 1.0], ["nods", 1.5, 2.5]])


@pytest.mark.parametrize("base,rows,message", [
    ("", [["waves", 0, 1]], "base prompt is empty"),
    (BASE, [["", None, None]], "no phases"),
    (BASE, [["waves", "soon", 1]], "phase row 1: start 'soon' is not a number"),
    (BASE, [["waves", 0, 1], ["", 1, 2]], "phase row 2: the phase text is empty"),
    (BASE, [["waves", 0, 1], ["nods", 0.5, 2]], "overlaps"),
    (BASE, [["waves", 0, 4]], r"ends after the clip \(3.0s\)"),
])
def test_bad_rows_give_one_line_naming_the_fault(base, rows, message):
    with pytest.raises(WebInputError, match=message) as caught:
        prompt_from_rows(base, rows, duration=3.0)
    assert "\n" not in str(caught.value)


def test_waveform_figure_shades_only_the_valid_rows():
    wave = np.sin(np.linspace(0, 200, 16000 * 2)).astype(np.float32)
    fig = waveform_figure(wave, 16000, [["waves", 0.2, 1.0], ["half typed", "x", None], ["nods", 1.5, 1.2]])
    ax = fig.axes[0]
    assert len(ax.patches) == 1 and ax.get_xlim() == pytest.approx((0, 2.0))  # only the valid window
    assert [t.get_text() for t in ax.texts] == [" 1: waves"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_served_app_generates_reports_faults_as_messages_and_renders_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from gradio_client import Client, handle_file

    from configs.loader import load_config
    from inference.web_demo import WebDemo, build_app
    from system.build import build_system
    from system.weights import save_weights
    overrides = [f"run.output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}",
                 f"model.codec.cache_dir={tmp_path / 'codec'}", "data.duration=1.2", "data.gen_workers=1",
                 "model.preset=tiny", "sample.steps=2", "data.num_test=1"]
    cfg = load_config("smoke", overrides)
    save_weights(build_system(cfg, progress=False).model.state_dict(), tmp_path / "runs" / "smoke" / "fit", {})
    demo = WebDemo(cfg, None, None, tmp_path / "out")
    example = demo.example()
    app = build_app(demo, example)
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        table = lambda rows: {"headers": ["phase text", "start (s)", "end (s)"], "data": rows}
        reference, audio = handle_file(example[0]), handle_file(example[1])
        video, plot, status = client.predict(reference, audio, example[2], table(example[3]), api_name="/generate")
        from common.video_io import read_video
        clip = read_video(video, sample_rate=16000)
        assert clip.frames.shape[0] == 90 and abs(len(clip.audio) / 16000 - 3.6) < 0.05  # 3x the 1.2 s clip
        assert Path(plot).is_file() and "3.6 s of video, 4 windows" in status
        with pytest.raises(Exception, match="phase row 1: start 'x' is not a number"):
            client.predict(reference, audio, BASE, table([["waves", "x", 1]]), api_name="/generate")
        with pytest.raises(Exception, match="upload a reference image"):
            client.predict(None, audio, BASE, table([["waves", 0, 1]]), api_name="/generate")
        with pytest.raises(Exception, match="no prompt enhancer"):
            client.predict("waves then nods", "", audio, api_name="/fill")
        shot = tmp_path / "web_demo.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'chrome'}", "--hide-scrollbars", "--window-size=1280,1650",
                        "--virtual-time-budget=15000", f"--screenshot={shot}", f"http://127.0.0.1:{port}/"],
                       check=True, capture_output=True, timeout=180)
        from PIL import Image
        image = np.asarray(Image.open(shot).convert("RGB"))
        assert image.shape[:2] == (1650, 1280) and image.std() > 10  # a rendered page, not a blank one
        orange = (np.abs(image.astype(int) - (249, 115, 22)).max(-1) < 40).sum()  # the Generate button
        assert orange > 2000
        if os.environ.get("ACTSYNC_SCREENSHOT"):
            shutil.copy(shot, os.environ["ACTSYNC_SCREENSHOT"])
    finally:
        app.close()
