"""Evaluation of enhancers on held-out examples: validity rate and each reward's mean.

Rows are enhancers: the rule-based template, the initial policy, the SFT policy, the GRPO policy (any
that exist). Policies answer greedily (deterministic), so rows differ only by their weights. Output:
JSON (per-row means and every completion) and a markdown table.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from common.atomic import atomic_write_text
from rl.examples import EnhancerExample, chat_prompt
from rl.rewards import REWARDS, RewardTools, score, weighted_total


@torch.no_grad()
def generate(model_dir: str | Path, examples: list[EnhancerExample], max_new_tokens: int, batch: int = 8,
             progress: bool = True) -> list[str]:
    """Greedy completions of the policy in `model_dir` for each example's chat prompt."""
    from tqdm import tqdm

    from rl.policy import load_policy
    model, tokenizer = load_policy(model_dir)
    model.eval()
    out = []
    for i in tqdm(range(0, len(examples), batch), desc=f"generate ({Path(model_dir).name})", disable=not progress):
        chats = [chat_prompt(e) for e in examples[i:i + batch]]
        enc = tokenizer.apply_chat_template(chats, add_generation_prompt=True, return_tensors="pt",
                                            padding=True, return_dict=True)
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [o.strip() for o in out]


def summarise(completions: list[str], examples: list[EnhancerExample], tools: RewardTools,
              weights: dict[str, float]) -> dict:
    scores = [score(c, e, tools) for c, e in zip(completions, examples)]
    means = {n: sum(s[n] for s in scores) / len(scores) for n in REWARDS}
    return {"validity": sum(s["format"] == 1.0 for s in scores) / len(scores), "rewards": means,
            "weighted_total": sum(weighted_total(s, weights) for s in scores) / len(scores),
            "completions": [{"clip": e.clip, "text": c, "scores": s} for c, e, s in zip(completions, examples, scores)]}


def markdown(rows: dict[str, dict], title: str) -> str:
    names = list(REWARDS)
    lines = [f"# {title}", "", "| enhancer | validity | " + " | ".join(names) + " | weighted total |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for row, r in rows.items():
        lines.append(f"| {row} | {r['validity']:.3f} | " + " | ".join(f"{r['rewards'][n]:.3f}" for n in names)
                     + f" | {r['weighted_total']:.3f} |")
    return "\n".join(lines) + "\n"


def write_report(rows: dict[str, dict], out_dir: Path, title: str, extra: dict | None = None) -> str:
    text = markdown(rows, title)
    atomic_write_text(out_dir / "eval.json", json.dumps({"rows": rows, **(extra or {})}, indent=1))
    atomic_write_text(out_dir / "eval.md", text)
    return text
