"""`main.py rl`: build the enhancer's examples, warm-start with SFT, train with GRPO, evaluate.

    python main.py rl -e configs/rl/smollm2.yaml                  # everything (resumes / skips finished)
    python main.py rl -e configs/rl/smollm2.yaml --stage evaluate # only the held-out table
    python main.py rl -e configs/rl/smollm2.yaml --stage downstream rl.generator=runs/demo/fit
    python main.py rl -e configs/rl/smollm2.yaml --stage downstream rl.generator=runs/demo/fit \
        rl.downstream_policies=false   # raw / template / ground-truth prompts only, no enhancer trained

Outputs under runs/<run.name>/rl/: sft/ and grpo/ (checkpoints, final/, log_history.json), eval.md and
eval.json (validity and reward means per enhancer, wall times, machine); with rl.generator set, also
downstream/ (videos per prompt condition, prompts.jsonl, downstream.md/json: rl/downstream.py).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from common.atomic import atomic_write_text
from rl.examples import SYSTEM_PROMPT, EnhancerExample, synthavatar_examples, template_enhance, user_message

CACHE = Path("cache/rl")


def cached_examples(split: str, count: int, duration: float, seed: int) -> list[EnhancerExample]:
    path = CACHE / f"examples-{split}-n{count}-d{duration:g}-s{seed}.jsonl"
    if path.is_file():
        return [EnhancerExample.from_json(line) for line in path.read_text().splitlines() if line]
    examples = synthavatar_examples(split, count, duration, seed, progress=True)
    atomic_write_text(path, "\n".join(e.to_json() for e in examples) + "\n")
    return examples


def _corpus(examples):
    return [SYSTEM_PROMPT] + [user_message(e) + "\n" + template_enhance(e, i) for i, e in enumerate(examples)]


def cmd_rl(cfg, args) -> dict:
    import torch

    from rl.evaluate import generate, summarise, write_report
    from rl.policy import policy_dir
    from rl.rewards import reward_weights
    from rl.scorers import build_tools
    from rl.train import run_grpo, run_sft
    rl = cfg.rl
    if rl.threads:
        torch.set_num_threads(rl.threads)
    run_dir = Path(args.run_dir)
    if args.stage == "downstream" and not rl.downstream_policies:  # no policy, examples or LM needed
        return {"wall": _downstream(rl, run_dir, {}, explicit=True)}
    resume = not args.fresh
    wall: dict[str, float] = {}
    t0 = time.time()
    train = cached_examples("train", rl.num_train, rl.duration, rl.seed)
    held_out = cached_examples("test", rl.num_eval, rl.duration, rl.seed)
    init = policy_dir(rl, corpus_fn=lambda: _corpus(train), cache_dir=CACHE)
    wall["examples_and_policy_s"] = time.time() - t0
    sft_final, grpo_final = run_dir / "sft" / "final", run_dir / "grpo" / "final"
    stages = ("sft", "grpo", "evaluate", "downstream") if args.stage == "all" else (args.stage,)
    needs_tools = "evaluate" in stages or ("grpo" in stages and not (grpo_final.is_dir() and resume))
    tools = build_tools(init) if needs_tools else None  # MiniLM + the frozen LM: only GRPO and evaluation
    if "sft" in stages and not (sft_final.is_dir() and resume):
        t = time.time()
        run_sft(rl, init, train, run_dir / "sft", resume)
        wall["sft_s"] = time.time() - t
    if "grpo" in stages and not (grpo_final.is_dir() and resume):
        t = time.time()
        run_grpo(rl, sft_final if sft_final.is_dir() else init, train, run_dir / "grpo", tools, resume)
        wall["grpo_s"] = time.time() - t
    if "downstream" in stages:
        wall.update(_downstream(rl, run_dir, {"SFT": sft_final, "SFT + GRPO": grpo_final}, explicit=args.stage != "all"))
    if "evaluate" not in stages:
        return {"wall": wall}
    weights = reward_weights(rl)
    rows = {"template (rule-based)": summarise([template_enhance(e) for e in held_out], held_out, tools, weights)}
    t = time.time()
    for name, directory in (("initial policy", init), ("SFT", sft_final), ("SFT + GRPO", grpo_final)):
        if Path(directory).is_dir():
            rows[name] = summarise(generate(directory, held_out, rl.eval_max_new_tokens), held_out, tools, weights)
    wall["evaluate_s"] = time.time() - t
    previous = run_dir / "eval.json"
    if previous.is_file():  # keep the training wall times of earlier invocations
        wall = {**json.loads(previous.read_text()).get("wall", {}), **wall}
    title = f"Prompt enhancer on {len(held_out)} held-out SynthAvatar prompts ({rl.policy})"
    text = write_report(rows, run_dir, title, {"wall": wall, "machine": platform.processor() or platform.machine(),
                                               "threads": torch.get_num_threads()})
    print(text)
    print("wall time (s):", {k: round(v, 1) for k, v in wall.items()})
    return {"rows": rows, "wall": wall}


def _downstream(rl, run_dir: Path, policies: dict[str, Path], explicit: bool) -> dict[str, float]:
    """The downstream H@S table when rl.generator names a trained generator (rl/downstream.py)."""
    from common.errors import ConfigError
    from rl.downstream import downstream_table
    if not rl.generator:
        if explicit:
            raise ConfigError("rl: --stage downstream needs rl.generator=<a generator's fit dir, e.g. runs/demo/fit>")
        print("rl: downstream table skipped (set rl.generator to a trained generator's fit dir, e.g. runs/demo/fit)")
        return {}
    found = {name: d for name, d in policies.items() if Path(d).is_dir()} if rl.downstream_policies else {}
    if rl.downstream_policies and not found:
        raise ConfigError(f"rl: no trained policy under {run_dir} for the downstream table (run the sft/grpo "
                          "stages, or set rl.downstream_policies=false for the raw / template / ground-truth rows)")
    t = time.time()
    print(downstream_table(rl, found, run_dir / "downstream"))
    return {"downstream_s": time.time() - t}
