#!/usr/bin/env python
"""Write the example generation requests: examples/requests.jsonl and the files it points to.

    python examples/make_examples.py                    # default config (64x64, 4 s clips, data.seed 0)
    python examples/make_examples.py -e demo data.root=/tmp/cache --out /tmp/examples

Takes the first two clips of the SynthAvatar test split (generated and cached under data.root if
missing) and writes, under OUT (default: examples/):
    assets/test_clip_0000k.png           reference image = the clip's first frame
    assets/test_clip_0000k.wav           its audio (16-bit PCM at data.sample_rate)
    assets/test_clip_00000_prompt.json   its structured prompt (JSON form)
    requests.jsonl                       two requests: clip 0 with the prompt file, clip 1 with its
                                         prompt inline; relative paths (resolved against OUT)
The binary assets (about 0.3 MB) are not committed (examples/.gitignore); requests.jsonl from the default
config is. Then: python main.py generate --requests examples/requests.jsonl [--weights RUN_DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.atomic import atomic_write, atomic_write_text  # noqa: E402
from common.audio_io import save_wav  # noqa: E402
from configs.loader import load_config  # noqa: E402
from synthavatar.dataset import ensure_split, load_clip  # noqa: E402


def write_clip_assets(clip: dict, assets: Path, stem: str, sample_rate: int) -> dict:
    """Reference png, audio wav and prompt json of one cached clip; returns their paths."""
    from PIL import Image
    reference, audio, prompt = assets / f"{stem}.png", assets / f"{stem}.wav", assets / f"{stem}_prompt.json"
    atomic_write(reference, lambda tmp: Image.fromarray(clip["video"][0]).save(tmp, format="PNG"))
    save_wav(audio, clip["audio"], sample_rate)
    atomic_write_text(prompt, json.dumps(clip["prompt"], indent=1) + "\n")
    return {"reference": reference, "audio": audio, "prompt": prompt}


def make_examples(cfg, out: Path, progress: bool = True) -> Path:
    paths = ensure_split(cfg.data, "test", progress)
    if len(paths) < 2:
        raise SystemExit(f"make_examples: the test split has {len(paths)} clip(s); need 2 (data.num_test)")
    out = Path(out)
    lines = []
    for index, name in ((0, "example_prompt_file"), (1, "example_inline_prompt")):
        clip = load_clip(paths[index])
        files = write_clip_assets(clip, out / "assets", f"test_clip_{index:05d}", int(cfg.data.sample_rate))
        request = {"name": name, "reference": files["reference"].relative_to(out).as_posix(),
                   "audio": files["audio"].relative_to(out).as_posix()}
        if index == 0:
            request["prompt"] = files["prompt"].relative_to(out).as_posix()
        else:
            files["prompt"].unlink()  # the second request carries its prompt inline
            request["prompt"] = clip["prompt"]
        lines.append(json.dumps(request))
    return atomic_write_text(out / "requests.jsonl", "\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--experiment", help="configs/experiment/NAME.yaml or a yaml path")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--out", type=Path, default=REPO / "examples", help="output directory (default: examples/)")
    args = parser.parse_args(argv)
    path = make_examples(load_config(args.experiment, args.overrides), args.out)
    print(f"wrote {path} and its assets under {args.out / 'assets'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
