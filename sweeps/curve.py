"""`main.py curve`: learning curves of a config on held-out clips (issue 15).

Trains the config once (`main.py fit`, resumable) with `train.snapshot_at` set to the curve's points, so
the generation weights (EMA) of each point are exported on the way (lightning_modules/callbacks.py
WeightSnapshots, with the training wall time and samples seen); then generates the first `--clips`
held-out clips from every snapshot and scores them with the evaluator (H@S, AA, TC, Sync-C, CSIM, PSNR,
...), next to the validation loss logged at the same steps. Writes runs/NAME/curve/curve.csv and
curve.png from the first `--clips` *val* clips: choices are made on val, so the test clips stay an unbiased
final report (`--split test`: those, into curve-test/; `--split train`: training clips, into curve-train/,
a memorisation check; `--tag T`: score the existing snapshots again, e.g. with other sample.* settings,
into curve-T/);
`main.py curve --overlay A.csv B.csv ... --out X.png` draws several runs on one plot.
Trade-off: scoring after training (not inside it) keeps the wall-time axis pure training time and lets a
finished run be re-scored with another sampler; it costs one model build per point (seconds).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.atomic import atomic_write, atomic_write_text
from common.errors import ConfigError

METRICS = ("h_at_s", "aa", "tc", "sync_c", "csim", "psnr")
COLUMNS = ("step", "samples_seen", "train_wall_s", "val_loss", *METRICS)


def curve_points(at: str, max_steps: int, count: int = 4) -> list[int]:
    """'60,120,240' -> [60, 120, 240]; '' -> `count` evenly spaced steps ending at max_steps."""
    if not at:
        return sorted({max(1, round(max_steps * (k + 1) / count)) for k in range(count)})
    try:
        points = sorted({int(p) for p in at.split(",") if p.strip()})
    except ValueError:
        raise ConfigError(f"--at {at!r}: expected comma-separated step numbers, e.g. 60,120,240") from None
    if not points or points[0] < 1:
        raise ConfigError(f"--at {at!r}: steps must be positive")
    return points


def val_losses(log: Path) -> dict[int, float]:
    """{step: val/mse} from the fit's metrics.csv (Lightning logs validation at step k as k - 1): the
    unweighted velocity MSE, comparable across recipes (val/loss adds loss weights and auxiliary losses)."""
    found: dict[int, float] = {}
    for path in sorted(log.parent.glob("metrics*.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                value = row.get("val/mse") or row.get("val/loss")
                if value:
                    found[int(row["step"]) + 1] = float(value)
    return found


def _nearest(values: dict[int, float], step: int) -> float:
    return values[min(values, key=lambda s: abs(s - step))] if values else math.nan


def score_snapshot(cfg, weights: Path, out_dir: Path, clips: int, progress: bool, split: str = "val") -> dict:
    """Generate the first `clips` clips of `split` from `weights` into out_dir and score them: {metric: mean}."""
    from evaluation.commands import evaluate
    from inference.split import generate_split

    generate_split(cfg, out_dir / "videos", split, weights=str(weights), num_clips=clips, progress=progress,
                   side_by_side=False, attention_plot=False)
    result = evaluate(cfg, split, out_dir / "videos", progress=progress)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=1))
    return {k: result["summary"][k][0] for k in METRICS if k in result["summary"]}


def ground_truth_scores(cfg, curve_dir: Path, progress: bool, split: str = "val") -> dict:
    """The ground truth's scores on `split` (the ceiling drawn in the plots), cached in curve_dir."""
    path = curve_dir / "ground_truth.json"
    if not path.is_file():
        from evaluation.commands import evaluate
        summary = evaluate(cfg, split, None, progress=progress)["summary"]
        atomic_write_text(path, json.dumps({k: summary[k][0] for k in METRICS if k in summary}, indent=1))
    return json.loads(path.read_text())


def write_csv(rows: list[dict], path: Path) -> Path:
    lines = [",".join(COLUMNS)] + [",".join(_cell(row.get(c)) for c in COLUMNS) for row in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _cell(value) -> str:
    return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()}
                for row in csv.DictReader(handle)]


def plot_curves(runs: dict[str, list[dict]], out: Path, x: str = "samples_seen",
                ground_truth: dict | None = None) -> Path:
    """One panel per metric (and the validation loss), one line per run; dashed: the ground truth."""
    panels = ("val_loss", *METRICS)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, key in zip(axes.flat, panels):
        for label, rows in runs.items():
            ax.plot([r[x] for r in rows], [r.get(key, math.nan) for r in rows], marker="o", label=label)
        if ground_truth and key in ground_truth and key != "psnr":  # PSNR of the truth against itself: inf
            ax.axhline(ground_truth[key], color="k", linestyle="--", linewidth=1, label="ground truth")
        ax.set_title(key)
        ax.set_xlabel(x.replace("_", " "))
        ax.grid(alpha=0.3)
    axes.flat[-1].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1:len(panels)]:  # the ground-truth line appears in the metric panels only
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes.flat[-1].legend(handles, labels, loc="center")
    fig.tight_layout()
    path = atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return path


def _label(path: Path) -> str:
    """runs/NAME/curve/curve.csv -> NAME; runs/NAME/curve-TAG/curve.csv -> NAME TAG; other.csv -> other."""
    if path.name != "curve.csv":
        return path.stem
    tag = path.parent.name.removeprefix("curve").removeprefix("-")
    return f"{path.parent.parent.name} {tag}".strip()


def cmd_curve(cfg, args) -> int:
    if args.overlay:
        if not args.out:
            raise ConfigError("--overlay needs --out FILE.png")
        runs = {_label(Path(p)): read_csv(Path(p)) for p in args.overlay}
        truth = Path(args.overlay[0]).parent / "ground_truth.json"
        truth = json.loads(truth.read_text()) if truth.is_file() else None
        print(f"wrote {plot_curves(runs, Path(args.out), args.x, truth)}")
        return 0
    from lightning_modules.fit import cmd_fit

    points = curve_points(args.at, cfg.train.max_steps)
    if points[-1] > cfg.train.max_steps:
        raise ConfigError(f"--at: step {points[-1]} is beyond train.max_steps={cfg.train.max_steps}")
    cfg.train.snapshot_at = points
    cfg.train.val_every = math.gcd(*points)  # a validation loss at every point
    fit_dir = Path(cfg.run.output_dir) / cfg.run.name / "fit"
    args.run_dir, args.resume = str(fit_dir), "auto"
    if not (fit_dir / "snapshots" / f"step-{points[-1]}").is_dir():
        from configs.loader import save_config
        save_config(cfg, fit_dir)
        cmd_fit(cfg, args)
    # --tag T (the same snapshots scored again, e.g. with other sample.* settings) and a split other than
    # val each get their own directory: curve-T/, curve-test/, curve-train/, curve-T-test/
    split = args.split
    tag = "-".join(t for t in (args.tag, "" if split == "val" else split) if t)
    curve_dir = Path(cfg.run.output_dir) / cfg.run.name / ("curve-" + tag if tag else "curve")
    losses = val_losses(fit_dir / "logs" / "metrics.csv")
    rows = []
    for step in points:
        snapshot = fit_dir / "snapshots" / f"step-{step}"
        meta = json.loads((snapshot / "weights.json").read_text())
        scores = score_snapshot(cfg, snapshot, curve_dir / f"step-{step}", args.clips, not args.quiet, split)
        rows.append({"step": step, "samples_seen": meta["samples_seen"], "train_wall_s": meta["train_wall_s"],
                     "val_loss": _nearest(losses, step)} | scores)
        print(json.dumps(rows[-1]))
    write_csv(rows, curve_dir / "curve.csv")
    truth = ground_truth_scores(cfg, curve_dir, not args.quiet, split)
    plot = plot_curves({cfg.run.name: rows}, curve_dir / "curve.png", args.x, truth)
    print(f"wrote {curve_dir / 'curve.csv'} and {plot}")
    return 0
