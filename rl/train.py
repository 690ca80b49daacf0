"""Training of the prompt enhancer: a short supervised warm start (TRL SFTTrainer) on template-made
pairs, then GRPO (TRL GRPOTrainer) on the registered rewards. A thin entry point around TRL's trainers,
not a fork: datasets, reward adapters, configs, resume and atomic saving.

Both stages checkpoint every `rl.save_steps` steps under <run>/<stage>/checkpoint-N and resume from the
newest one (`--resume auto`); the finished policy is saved to <run>/<stage>/final through a temp dir and
a rename. Logging: TRL's per-reward means (rewards/<name>/mean), loss, KL, completion lengths to W&B
(offline unless WANDB_MODE says otherwise) and always to <run>/<stage>/log_history.json.
"""
from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

from common.atomic import atomic_write_text
from rl.examples import EnhancerExample, chat_prompt, template_enhance
from rl.rewards import REWARDS, RewardTools, reward_weights


@lru_cache(maxsize=8192)
def _example(text: str) -> EnhancerExample:
    return EnhancerExample.from_json(text)


def completion_text(completion) -> str:
    """TRL passes conversational completions as [{'role': 'assistant', 'content': ...}]."""
    return completion[0]["content"] if isinstance(completion, list) else str(completion)


def trl_reward_functions(names: list[str], tools: RewardTools) -> list:
    """One TRL reward callable per registered reward, named after it (TRL logs rewards/<name>/mean)."""
    def make(name):
        def reward(prompts, completions, example, **kwargs):
            return [REWARDS[name](completion_text(c), _example(e), tools) for c, e in zip(completions, example)]
        reward.__name__ = name
        return reward
    return [make(n) for n in names]


def last_checkpoint(directory: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint
    return get_last_checkpoint(str(directory)) if directory.is_dir() else None


def _common_args(cfg, out: Path, steps: int) -> dict:
    import torch
    if cfg.report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_PROJECT", "actsync-rl")
        os.environ.setdefault("WANDB_DIR", str(out.parent))
    return dict(output_dir=str(out), max_steps=steps, logging_steps=1, save_steps=cfg.save_steps,
                save_total_limit=2, report_to=[] if cfg.report_to == "none" else [cfg.report_to],
                use_cpu=not torch.cuda.is_available(), bf16=False, seed=cfg.seed, dataloader_num_workers=0,
                gradient_checkpointing=False, disable_tqdm=False)


def _finish(trainer, tokenizer, out: Path) -> Path:
    """Save the trained policy to out/final atomically, and the log history beside it."""
    final, tmp = out / "final", out / "final.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(out / "log_history.json", json.dumps(trainer.state.log_history, indent=1))
    return final


def run_sft(cfg, init_dir: Path, examples: list[EnhancerExample], out: Path, resume: bool) -> Path:
    """Supervised warm start on (chat prompt -> template structured prompt) pairs; loss on the answer."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rl.policy import load_policy
    model, tokenizer = load_policy(init_dir)
    rows = [{"prompt": chat_prompt(e), "completion": [{"role": "assistant", "content": template_enhance(e, i)}]}
            for i, e in enumerate(examples)]
    args = SFTConfig(**_common_args(cfg, out, cfg.sft_steps), per_device_train_batch_size=cfg.sft_batch,
                     learning_rate=cfg.sft_lr, lr_scheduler_type="cosine", warmup_steps=min(5, cfg.sft_steps // 10),
                     max_length=768, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=last_checkpoint(out) if resume else None)
    return _finish(trainer, tokenizer, out)


def run_grpo(cfg, start_dir: Path, examples: list[EnhancerExample], out: Path, tools: RewardTools,
             resume: bool) -> Path:
    """GRPO from the SFT policy: groups of `num_generations` completions per prompt, weighted rewards."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rl.policy import load_policy
    weights = reward_weights(cfg)
    names = [n for n in REWARDS if weights[n] > 0]
    model, tokenizer = load_policy(start_dir)
    rows = [{"prompt": chat_prompt(e), "example": e.to_json()} for e in examples]
    args = GRPOConfig(**_common_args(cfg, out, cfg.grpo_steps), learning_rate=cfg.grpo_lr,
                      lr_scheduler_type="constant", per_device_train_batch_size=cfg.num_generations * cfg.prompts_per_step,
                      num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      temperature=cfg.temperature, beta=cfg.beta, reward_weights=[weights[n] for n in names])
    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward_functions(names, tools), args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=last_checkpoint(out) if resume else None)
    return _finish(trainer, tokenizer, out)
