#!/usr/bin/env python
"""ActSync command-line entry point.

Every subcommand loads the config (configs/base.yaml <- -e experiment <- key=value
overrides; see configs/loader.py), fails fast on unknown keys, saves the
resolved config to ``<run.output_dir>/<run.name>/<subcommand>/resolved_config.yaml``
and then runs the command.

Examples::

    python main.py config                                  # print the default config
    python main.py config -e demo data.resolution=128      # ... with an experiment + override
    python main.py data -e demo --preview                  # generate SynthAvatar, render previews
    python main.py data -e smoke --split val --inspect     # generate one split and describe it
    python main.py evaluate -e demo --ground-truth         # metrics on the ground-truth test videos
    python main.py evaluate -e demo --videos runs/x/videos --out runs/x/eval
    python main.py data -e runs/demo/data/resolved_config.yaml   # rerun a saved config
    python main.py export --checkpoint runs/x/fit/checkpoints/step-00000400.ckpt --dtype bf16  # DiT safetensors
    python main.py rl -e configs/rl/smollm2.yaml           # prompt enhancer: SFT, GRPO, held-out table
    python main.py data export -e smoke --out runs/export --odd    # SynthAvatar as mp4 + manifest.jsonl
    python main.py prep data.manifest=runs/export/manifest.jsonl data.root=runs/prep   # real-video stages

Overrides (``key=value``) may appear anywhere after the subcommand.  Config
errors print one line to stderr and exit with status 2.

Heavy modules (torch, lightning, the command implementations) are imported
inside the handlers so ``--help`` and ``config`` stay fast.
"""

import argparse
import sys
from pathlib import Path

from realvideo.prep import STAGES as PREP_STAGES  # light: the stage names for --stage

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- handlers


def run_config(cfg, args) -> int:
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(cfg, resolve=True), end="")
    return 0


def run_data(cfg, args) -> int:
    if args.action == "export":
        from realvideo.commands import cmd_data_export
        return cmd_data_export(cfg, args)
    if args.action == "import":
        from realvideo.commands import cmd_data_import
        return cmd_data_import(cfg, args)
    from synthavatar.commands import cmd_data

    return cmd_data(cfg, args)


def run_prep(cfg, args) -> int:
    from realvideo.prep import cmd_prep

    code = cmd_prep(cfg, args)
    wants_cache = args.stage == "cache" or (args.stage == "all" and cfg.data.kind == "real"
                                            and bool(cfg.train.condition_cache))
    if wants_cache and args.shard != "0/1":  # a shard sees part of annotate.jsonl; the cache needs all of it
        print("prep: the cache stage runs unsharded; run `main.py prep --stage cache` after the shards finish")
        wants_cache = False
    if code == 0 and wants_cache and not args.inspect:
        import json

        from system.condition_cache import fill_condition_cache  # builds the encoders, as fit does
        print(json.dumps(fill_condition_cache(cfg, progress=not args.quiet)))
    return code


def run_evaluate(cfg, args) -> int:
    from evaluation.commands import cmd_evaluate

    return cmd_evaluate(cfg, args)


def run_fit(cfg, args) -> int:
    from lightning_modules.fit import cmd_fit

    return cmd_fit(cfg, args)


def run_validate(cfg, args) -> int:
    from lightning_modules.fit import cmd_validate

    return cmd_validate(cfg, args)


def run_generate(cfg, args) -> int:
    from inference.commands import cmd_generate

    return cmd_generate(cfg, args)


def run_app(cfg, args) -> int:
    from inference.web_demo import cmd_app

    return cmd_app(cfg, args)


def run_export(cfg, args) -> int:
    from lightning_modules.export import cmd_export

    return cmd_export(cfg, args)


def run_rl(cfg, args) -> int:
    from rl.commands import cmd_rl

    return cmd_rl(cfg, args)


def run_curve(cfg, args) -> int:
    from sweeps.curve import cmd_curve

    return cmd_curve(cfg, args)


def run_sweep(cfg, args) -> int:
    from sweeps.runner import cmd_sweep

    return cmd_sweep(cfg, args)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    # Options shared by every subcommand live on a parent parser so they can be
    # written after the subcommand name (`main.py data -e demo`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-e", "--experiment", metavar="NAME", action="append",
                        help="configs/experiment/NAME.yaml, a group file (method/NAME, scale/NAME, "
                             "hardware/NAME, data/NAME) or a path to a yaml file; repeat to compose "
                             "(later wins)")
    common.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.resolution=128")

    parser = argparse.ArgumentParser(
        prog="main.py", description="ActSync: talking-avatar video generation research.",
        epilog="See `python main.py COMMAND --help` and the module docstring for examples.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", parents=[common], help="print the resolved config as yaml")
    config.set_defaults(handler=run_config, saves_config=False)

    data = commands.add_parser("data", parents=[common], help="generate / preview / inspect SynthAvatar")
    data.add_argument("--split", choices=SPLITS + ("all",), default="all",
                      help="split(s) to generate (default: all)")
    data.add_argument("--preview", action="store_true", help="render preview clips")
    data.add_argument("--inspect", action="store_true", help="print dataset statistics")
    data.add_argument("--action", choices=("generate", "export", "import"), default="generate",
                      help=argparse.SUPPRESS)  # set by `data export` / `data import` (parse_args)
    data.add_argument("--out", help="export: output folder; import: the manifest.jsonl to write")
    data.add_argument("--max-clips", type=int, default=0, help="export: clips per split (0 = all)")
    data.add_argument("--odd", action="store_true", help="export: add odd and broken files (expected.json)")
    data.add_argument("--from", dest="source", nargs=2, metavar=("KIND", "FILE"),
                      help="import: diffsynth metadata.csv | videox metadata.json")
    data.set_defaults(handler=run_data, saves_config=True)

    prep = commands.add_parser("prep", parents=[common],
                               help="real videos: probe / segment / analyse / filter / annotate / cache (data.manifest)")
    prep.add_argument("--stage", choices=(*PREP_STAGES, "cache", "all"),
                      default="all", help="stage to run (default: all, in order)")
    prep.add_argument("--shard", default="0/1", metavar="I/N", help="run every N-th item from I (default 0/1)")
    prep.add_argument("--redo", action="store_true", help="redo items that already have a record")
    prep.add_argument("--inspect", action="store_true", help="clips per bucket, seconds kept, rejects by reason")
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    prep.set_defaults(handler=run_prep, saves_config=False)

    evaluate = commands.add_parser("evaluate", parents=[common], help="compute evaluation metrics")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--videos", metavar="DIR", type=Path, help="directory of generated videos")
    source.add_argument("--ground-truth", action="store_true",
                        help="evaluate the ground-truth videos of --split (sanity reference)")
    evaluate.add_argument("--split", choices=SPLITS, default="test",
                          help="dataset split to evaluate against (default: test)")
    evaluate.add_argument("--out", metavar="DIR", type=Path, help="where to write metrics (default: chosen by the command)")
    evaluate.add_argument("--with-ground-truth", action="store_true",
                          help="with --videos: also score the split's ground truth and print both rows")
    evaluate.set_defaults(handler=run_evaluate, saves_config=True)

    fit = commands.add_parser("fit", parents=[common], help="train one stage (train.* in the config)")
    fit.add_argument("--resume", metavar="auto|PATH", default="",
                     help="auto: continue from the newest complete checkpoint of this run (if any)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(handler=run_fit, saves_config=True)

    validate = commands.add_parser("validate", parents=[common], help="validation losses of trained weights")
    validate.add_argument("--weights", metavar="PATH", help="run dir, .safetensors or .ckpt "
                          "(default: runs/NAME/fit)")
    validate.set_defaults(handler=run_validate, saves_config=True)

    generate = commands.add_parser("generate", parents=[common],
                                   help="generate videos (mp4 with audio) from trained weights")
    request = generate.add_mutually_exclusive_group()
    request.add_argument("--split", choices=SPLITS, help="generate a SynthAvatar split's clips (default: test)")
    request.add_argument("--requests", metavar="FILE.jsonl", type=Path,
                         help="one request per line: {reference, audio, prompt[, name]}")
    request.add_argument("--reference", metavar="IMAGE", type=Path, help="reference image (png/jpg) ...")
    generate.add_argument("--audio", metavar="WAV", type=Path, help="... with this audio")
    generate.add_argument("--prompt", metavar="FILE", type=Path, help="... and this structured prompt (.json/.txt)")
    generate.add_argument("--weights", metavar="PATH", help="run dir, .safetensors or .ckpt (default: runs/NAME/fit); "
                          "without -e, the config.json saved beside the weights is used")
    generate.add_argument("--out", metavar="DIR", type=Path, help="output dir (default: runs/NAME/generate)")
    generate.add_argument("--overwrite", action="store_true",
                          help="--requests: regenerate requests whose mp4 already exists (default: skip them)")
    generate.add_argument("--parallel", action="store_true",
                          help="under torchrun: split the DiT over the processes (sequence parallel, and "
                               "sample.guidance_parallel ranks per CFG pass group); rank 0 writes")
    generate.set_defaults(handler=run_generate, saves_config=True)

    app = commands.add_parser("app", parents=[common],
                              help="web demo (Gradio): reference + audio + timed phases -> video, in a browser")
    app.add_argument("--weights", metavar="PATH", help="run dir, .safetensors or .ckpt (default: runs/NAME/fit)")
    app.add_argument("--enhancer", metavar="DIR", help="prompt-enhancer policy (default: runs/NAME/rl/grpo/final)")
    app.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    app.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    app.set_defaults(handler=run_app, saves_config=False)

    sweep = commands.add_parser("sweep", parents=[common], help="run an ablation sweep and write its table")
    sweep.add_argument("sweep_file", metavar="SWEEP.yaml", type=Path, help="e.g. configs/sweeps/actavatar_table4.yaml")
    sweep.add_argument("--print-commands", action="store_true",
                       help="print one command per run (cluster / wandb agent) instead of running them")
    sweep.add_argument("--table-only", action="store_true", help="only (re)build the table from finished runs")
    sweep.set_defaults(handler=run_sweep, saves_config=False)

    rl = commands.add_parser("rl", parents=[common],
                             help="prompt enhancer: SFT warm start, TRL GRPO, held-out evaluation (rl.* in the config)")
    rl.add_argument("--stage", choices=("all", "sft", "grpo", "evaluate", "downstream"), default="all",
                    help="one stage only (default: all; finished stages are skipped)")
    rl.add_argument("--fresh", action="store_true", help="ignore finished stages and checkpoints of this run")
    rl.set_defaults(handler=run_rl, saves_config=True)

    export = commands.add_parser("export", parents=[common],
                                 help="consolidate a checkpoint (DeepSpeed dir or .ckpt) into DiT safetensors")
    export.add_argument("--checkpoint", metavar="PATH", required=True,
                        help="step checkpoint (a ZeRO-3 directory or a .ckpt file) or a fit run dir (newest one)")
    export.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="weights dtype (default: fp32)")
    export.add_argument("--out", metavar="FILE", type=Path,
                        help="output .safetensors (default: next to the checkpoint, step-N.safetensors)")
    export.add_argument("--no-ema", action="store_true", help=".ckpt: the raw weights, not the EMA average")
    export.set_defaults(handler=run_export, saves_config=False)

    curve = commands.add_parser("curve", parents=[common],
                                help="learning curve: train once, score held-out clips at fixed steps (CSV + PNG)")
    curve.add_argument("--at", default="", metavar="STEPS",
                       help="comma-separated steps to score (default: 4 evenly spaced up to train.max_steps)")
    curve.add_argument("--clips", type=int, default=8, help="held-out clips generated per point (default: 8)")
    curve.add_argument("--x", choices=("samples_seen", "train_wall_s", "step"), default="samples_seen",
                       help="x axis of the plot (default: samples_seen)")
    curve.add_argument("--overlay", nargs="+", metavar="CSV", help="only plot these curve.csv files on one figure")
    curve.add_argument("--out", metavar="FILE.png", help="with --overlay: the figure to write")
    curve.add_argument("--tag", default="", help="score the run's existing snapshots again into curve-TAG/ "
                                                 "(e.g. with other sample.* settings)")
    curve.add_argument("--split", choices=("val", "test", "train"), default="val",
                       help="clips scored (default: val, the split for choosing a recipe; test = the final "
                            "held-out report; train = can the recipe fit the clips it saw?)")
    curve.add_argument("--quiet", action="store_true", help="no progress bars")
    curve.set_defaults(handler=run_curve, saves_config=False)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "data" and argv[1] in ("export", "import"):
        argv = ["data", "--action", argv[1]] + argv[2:]  # `data export ...` reads as a data action
    args, extras = parser.parse_known_args(argv)
    # Overrides written after an option (`data --preview data.fps=30`) are not
    # picked up by the positional; accept them here, reject anything else.
    unknown = [item for item in extras if item.startswith("-") or "=" not in item]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(args.overrides) + extras
    return args


# --------------------------------------------------------------------------- main


def _experiments(args) -> list:
    """The -e files, or, when there are none and --weights names exported weights with a config.json
    beside them (system/weights.py), that saved config: `generate --weights DIR` needs no experiment."""
    if args.experiment or not getattr(args, "weights", None):
        return args.experiment or []
    from system.weights import CONFIG, resolve_weights, weights_config
    saved = weights_config(args.weights)
    if saved is None:
        return []
    return [(str(resolve_weights(args.weights).parent / CONFIG), saved)]


def main(argv=None) -> int:
    args = parse_args(argv)
    from common.errors import ActSyncError, ConfigError
    from configs.loader import load_config, save_config

    try:
        cfg = load_config(_experiments(args), args.overrides)
        if args.saves_config:
            args.run_dir = Path(cfg.run.output_dir) / cfg.run.name / args.command
            save_config(cfg, args.run_dir)
        result = args.handler(cfg, args)
    except ConfigError as error:  # commands may raise it too, e.g. for a missing --videos
        print(f"main.py: config error: {error}", file=sys.stderr)
        return 2
    except ActSyncError as error:  # bad user input (common/errors.py): one line naming the file, no traceback
        print(f"main.py {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    # Commands may return an exit status; anything else (None, a summary) means success.
    is_status = isinstance(result, int) and not isinstance(result, bool)
    return result if is_status else 0


if __name__ == "__main__":
    sys.exit(main())
