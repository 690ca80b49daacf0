"""Running a `main.py generate` call's requests: the batch loop with its results file, and the split /
request dispatch one rank runs (inference/commands.py for one process, inference/parallel.py for each rank
of a torchrun launch).
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

GENERATION_FAULTS = (RuntimeError, ValueError, OSError)  # out of memory, a bad tensor, a full disk: per request


def generate_requests(generator, requests, out_dir: Path, progress: bool = True, overwrite: bool = False,
                      write: bool = True, existing: set[str] | None = None,
                      retry: bool = True) -> tuple[list[Path], list[dict]]:
    """Generate `requests` (inference/requests.py) into out_dir; returns the mp4 paths written and the
    results.jsonl records of the requests that failed.

    A batch keeps going past a request that fails at generation time: a failed batch is retried one request
    at a time, and each outcome (written / skipped / failed with the reason) is a line of
    out_dir/results.jsonl (rewritten atomically after every batch). A rerun skips requests whose
    <name>.mp4 already exists (overwrite=True redoes them). Under `generate --parallel` every rank runs this
    with the same requests; only rank 0 writes (write=False elsewhere), and `existing` (rank 0's list of
    videos already there) makes every rank skip the same requests; retry=False there, since a retry after a
    fault that only rank 0 saw (a failed write) would run model calls the other ranks do not."""
    import json

    from common.atomic import atomic_write_text
    from common.errors import AudioError
    from inference.outputs import ClipWriter
    from inference.requests import batches

    s = generator.cfg.sample
    codec = generator.codec
    for request in requests:  # the codec needs at least one latent frame after the reference
        if codec.num_latent_frames(request.num_frames) < 2:
            where = f"{request.source}: " if request.source != "command line" else ""
            raise AudioError(f"{where}{request.audio_path}: audio gives {request.num_frames} frames, too short for "
                             f"the codec (at least {codec.num_video_frames(2)} frames = "
                             f"{codec.num_video_frames(2) / generator.cfg.data.fps:.2f} s)")
    if s.side_by_side:
        print("generate: sample.side_by_side needs ground truth; only --split writes side-by-side videos")
    fps = generator.cfg.data.fps
    for request in requests:  # say how a long request is generated (inference/windows.py)
        plan = generator.window_plan(request.num_frames)
        if plan is not None:
            print(f"generate: {request.name}: {request.num_frames / fps:.1f} s of audio -> {len(plan.starts)} "
                  f"chained windows of {plan.length / fps:.2f} s "
                  f"({plan.motion} motion frame{'s' if plan.motion > 1 else ''})")
    if existing is None:
        existing = {r.name for r in requests if (out_dir / f"{r.name}.mp4").is_file()}
    results = {r.name: {"name": r.name, "status": "skipped", "path": str(out_dir / f"{r.name}.mp4")}
               for r in requests if not overwrite and r.name in existing}
    todo = [r for r in requests if r.name not in results]
    seed_of = {r.name: s.seed * 100_003 + i for i, r in enumerate(requests)}  # seeds do not shift on a rerun
    writer = ClipWriter(generator, out_dir, side_by_side=False, attention_plot=s.attention_plot, write=write)
    written = []

    def record():
        if not write:
            return
        lines = [json.dumps(results[r.name]) for r in requests if r.name in results]
        atomic_write_text(out_dir / "results.jsonl", "\n".join(lines) + "\n")

    def run(group, batch):
        paths = writer.write_batch([r.name for r in group], batch, group[0].num_frames, [seed_of[r.name] for r in group])
        for r, path in zip(group, paths):
            results[r.name] = {"name": r.name, "status": "written", "path": str(path)}
        written.extend(paths)

    def fail(request, error):
        results[request.name] = {"name": request.name, "status": "failed", "source": request.source,
                                 "reason": f"{type(error).__name__}: {error}"}

    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(todo), desc="generating requests", unit="clip", disable=not progress) as bar:
        for positions, batch in batches(todo, s.batch_size):
            group = [todo[i] for i in positions]
            try:
                run(group, batch)
            except GENERATION_FAULTS as error:
                if len(group) > 1 and retry:  # alone: one bad request does not sink its batch
                    for r in group:
                        try:
                            run([r], next(batches([r], 1))[1])
                        except GENERATION_FAULTS as fault:
                            fail(r, fault)
                else:
                    for r in group:
                        fail(r, error)
            bar.update(len(group))
            record()
    writer.finish()
    record()
    failed = [v for v in results.values() if v["status"] == "failed"]
    skipped = sum(v["status"] == "skipped" for v in results.values())
    if skipped:
        print(f"generate: skipped {skipped} request(s) whose video exists (--overwrite redoes them)")
    for f in failed:
        print(f"generate: {f['name']} failed: {f['reason']}")
    return written, failed


def run_generation(generator, cfg, args, mode: str, requests, out_dir: Path, write: bool = True,
                   existing: set[str] | None = None, progress: bool = True,
                   retry: bool = True) -> tuple[list[Path], list[dict]]:
    """The generation of one `main.py generate` call, on one rank (write=False: compute only)."""
    from inference.split import generate_split
    if mode == "split":
        split = getattr(args, "split", None) or "test"
        return generate_split(cfg, out_dir, split, None, int(cfg.sample.num_clips), progress, generator,
                              write=write), []
    return generate_requests(generator, requests, out_dir, progress=progress,
                             overwrite=bool(getattr(args, "overwrite", False)), write=write, existing=existing,
                             retry=retry)


def report(written: list[Path], failed: list[dict], out_dir: Path) -> int:
    print(f"generate: wrote {len(written)} video{'s' if len(written) != 1 else ''} to {out_dir}")
    if failed:
        print(f"generate: {len(failed)} request(s) failed; see {out_dir / 'results.jsonl'}")
        return 1
    return 0
