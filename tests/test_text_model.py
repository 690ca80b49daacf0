"""Text encoders and structured prompt tokens: block assignment, windows, padding, truncation, caching."""
import json
import re
import warnings

import pytest
import torch
from omegaconf import OmegaConf

from models.prompt import Phase, PromptError, StructuredPrompt, normalized_windows, to_global, to_json
from models.prompt_tokens import assign_blocks, encode_prompts, render_structured, structured_prompts
from models.text_encoders import LearnedTextEncoder, MiniLMTextEncoder, TextConfig, UMT5TextEncoder, build_text_encoder
from synthavatar.actions import ACTIONS

PROMPTS = [
    StructuredPrompt("A person with short black hair. They stand in front of a plain wall.",
                     (Phase(0.0, 1.5, "waves hello"), Phase(1.5, 2.6, "nods"), Phase(3.0, 4.0, "Looks to the left!")),
                     4.0),
    StructuredPrompt("A person.", (Phase(0.5, 2.0, "claps the hands together"),), 2.0),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def minilm():
    return MiniLMTextEncoder(max_tokens=160)


@pytest.fixture(scope="module")
def umt5_dir(tmp_path_factory):
    """A tiny random umT5 + Unigram tokenizer saved like an HF model directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel
    path = tmp_path_factory.mktemp("umt5")
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator([render_structured(p)[0] for p in PROMPTS] * 3 + ["a person waves"], trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = UMT5Config(vocab_size=tok.get_vocab_size(), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    UMT5EncoderModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def umt5(umt5_dir):
    return UMT5TextEncoder(umt5_dir, max_tokens=512, cache_size=0)


def _learned():
    return LearnedTextEncoder(LearnedTextEncoder.build_vocab([render_structured(p)[0] for p in PROMPTS]), dim=16)


def _check_blocks(batch, encoder, prompts):
    """Every block's tokens cover exactly the characters of its own line of the rendered prompt."""
    encoded = encoder.encode([render_structured(p)[0] for p in prompts])
    for i, prompt in enumerate(prompts):
        text, starts = render_structured(prompt)
        offsets, n = encoded.offsets[i], len(encoded.offsets[i])
        phase, window = batch.phase[i, :n], batch.window[i, :n]
        assert batch.mask[i, :n].all() and not batch.mask[i, n:].any()
        for k, start in enumerate(starts):
            line = range(start, starts[k + 1] if k + 1 < len(starts) else len(text))
            covered = {c for j in range(n) if phase[j] == k and offsets[j] is not None for c in range(*offsets[j])}
            # (SentencePiece's prepended "▁" may share a character with the next token, so compare sets)
            assert {c for c in covered if not text[c].isspace()} == {c for c in line if not text[c].isspace()}, k
        expected = torch.tensor([(0.0, 1.0)] + normalized_windows(prompt))[phase]  # (n, 2)
        torch.testing.assert_close(window, expected)
        assert all(phase[j] == 0 for j in range(n) if offsets[j] is None)  # CLS/SEP/EOS are base tokens
        assert torch.equal(batch.is_phase[i], batch.phase[i] > 0)
        # padding: masked, phase 0, empty window, exact zeros
        assert not batch.phase[i, n:].any() and not batch.window[i, n:].any() and not batch.hidden[i, n:].any()


@pytest.mark.parametrize("name", ["minilm", "umt5", "learned"])
def test_structured_tokens_carry_their_block_phase_and_window(name, request):
    encoder = _learned() if name == "learned" else request.getfixturevalue(name)
    batch = encode_prompts(PROMPTS, encoder, "structured")
    _check_blocks(batch, encoder, PROMPTS)
    assert batch.phase[0].max() == 3 and batch.phase[1].max() == 1
    cond = batch.to_cond()
    assert cond.text is batch.hidden and cond.text_mask is batch.mask and cond.text_phase is batch.phase
    assert cond.text_window is batch.window and cond.text_is_phase is batch.is_phase
    assert cond.text.shape == (2, batch.mask.shape[1], encoder.dim) and cond.audio is None


def test_whitespace_and_zero_width_tokens_join_the_following_word():
    text, starts = "Base: a b\nPhase-1 [0.0s–1.0s]: c", [0, 10]
    offsets = [None, (0, 4), (9, 10), (10, 10), (10, 15), (31, 32), None]
    assert assign_blocks(text, offsets, starts) == [0, 0, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("mode", ["global", "brief"])
def test_global_and_brief_modes_have_only_base_tokens(mode, minilm):
    batch = encode_prompts(PROMPTS, minilm, mode)
    assert not batch.phase.any() and not batch.is_phase.any()
    assert torch.equal(batch.window[batch.mask], torch.tensor([[0.0, 1.0]]).expand(int(batch.mask.sum()), 2))
    if mode == "global":
        assert int(batch.mask[0].sum()) == minilm.num_tokens(to_global(PROMPTS[0]))
    else:  # the brief caption is the identity sentence only: far shorter than the full prompt
        assert int(batch.mask[0].sum()) == minilm.num_tokens("A person with short black hair.")


def test_umt5_trims_to_true_length_and_zero_pads(umt5, umt5_dir):
    assert umt5.dim == 32 and not any(p.requires_grad for p in umt5.parameters())
    umt5.train()
    assert not umt5.model.training  # frozen encoders stay in eval mode
    texts = ["a person waves", render_structured(PROMPTS[0])[0]]
    out = umt5.encode(texts)
    n = int(out.mask[0].sum())
    assert n < out.mask.shape[1] and torch.equal(out.hidden[0, n:], torch.zeros_like(out.hidden[0, n:]))
    ids = umt5.tokenizer(texts[0], return_tensors="pt")["input_ids"]  # the short text alone, unpadded
    with torch.no_grad():
        alone = umt5.model(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(out.hidden[0, :n], alone, rtol=1e-5, atol=1e-5)  # padding does not leak in
    assert out.offsets[0][-1] is None  # the EOS token
    fixed = UMT5TextEncoder(umt5_dir, max_tokens=64, cache_size=0, pad_to_max=True).encode(texts)
    assert fixed.hidden.shape[1] == 64 and not fixed.hidden[~fixed.mask].any()


def test_missing_or_wrong_model_directory_errors_name_the_path(tmp_path):
    missing = tmp_path / "no_such_umt5"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        UMT5TextEncoder(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "config.json"))):
        UMT5TextEncoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "umt5"}))
    with pytest.raises(OSError, match=f"cannot load tokenizer/model from {re.escape(str(tmp_path))}"):
        UMT5TextEncoder(tmp_path)  # no tokenizer files
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"config\.json has model_type 'bert', expected 'umt5'"):
        UMT5TextEncoder(tmp_path)
    with pytest.raises(ValueError, match=r"text\.path encoder 'umt5' needs"):
        build_text_encoder(TextConfig(encoder="umt5"))


def test_minilm_is_frozen_deterministic_and_cached(minilm):
    assert minilm.dim == 384 and not any(p.requires_grad for p in minilm.parameters())
    minilm.clear_cache()
    hits, misses = minilm.cache_hits, minilm.cache_misses
    first = minilm.encode(["A person waves.", "A person nods."])
    second = minilm.encode(["A person nods.", "A person waves."])  # other order: same per-text states
    assert (minilm.cache_hits - hits, minilm.cache_misses - misses) == (2, 2)
    assert torch.equal(first.hidden[0], second.hidden[1]) and not second.hidden.requires_grad
    minilm.cache_size = 0
    try:  # the cache returns what a fresh forward pass computes
        torch.testing.assert_close(minilm.encode(["A person waves."]).hidden[0], first.hidden[0, :first.mask[0].sum()])
        minilm.cache_size = 2
        minilm.encode(["one", "two", "three"])
        assert [text for text, _ in minilm._cache] == ["two", "three"]  # least recently used evicted
    finally:
        minilm.cache_size = 1024


def test_truncation_never_drops_a_phase_silently(minilm):
    prompt = StructuredPrompt("A person. " * 10, (Phase(0.0, 1.0, "waves hello"), Phase(1.0, 2.0, "nods")), 2.0)
    full = encode_prompts([prompt], minilm)
    needed, first_of_phase_2 = int(full.mask.sum()), int((full.phase[0] == 2).nonzero()[0])
    assert needed == minilm.num_tokens(render_structured(prompt)[0])
    # Truncation keeps [SEP]: max_tokens = first_of_phase_2 + 1 leaves phase 2 with no token at all.
    with pytest.raises(ValueError, match=rf"prompt 0: phase 2 \('nods'\) has no tokens left.*"
                                         rf"max_tokens={first_of_phase_2 + 1} \(the prompt needs {needed}\)"):
        encode_prompts([prompt], minilm, max_tokens=first_of_phase_2 + 1)
    with pytest.warns(UserWarning, match="prompt 0 truncated to max_tokens=.*phase 2 is cut short"):
        batch = encode_prompts([prompt], minilm, max_tokens=first_of_phase_2 + 2)
    assert int(batch.mask.sum()) == first_of_phase_2 + 2 and int((batch.phase[0] == 2).sum()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a prompt that fits raises no warning
        encode_prompts([prompt], minilm, max_tokens=needed)
    with pytest.warns(UserWarning, match=r"prompt 0 \(global\) truncated"):
        encode_prompts([prompt], minilm, "global", max_tokens=10)


def test_learned_encoder_maps_unknown_words_to_unk_and_trains():
    encoder = _learned()
    unk, waves = encoder.index["<unk>"], encoder.index["waves"]
    assert encoder.token_ids("Zebra WAVES") == [unk, waves]
    out = encoder.encode(["zebra waves", "giraffe waves"])
    assert torch.equal(out.hidden[0, 0], out.hidden[1, 0]) and torch.equal(out.hidden[0, 1], out.hidden[1, 1])
    out.hidden.sum().backward()
    assert encoder.embedding.weight.grad[unk].abs().sum() > 0  # trainable, unlike the pretrained encoders
    state = encoder.state_dict()
    _learned().load_state_dict(state)  # same vocabulary: loads
    with pytest.raises(ValueError, match="vocabulary"):
        LearnedTextEncoder(["other", "words"], dim=16).load_state_dict(state)
    with pytest.raises(ValueError, match="text.encoder=learned needs a vocabulary"):
        build_text_encoder(TextConfig(encoder="learned"))


def test_unseen_test_paraphrases_stay_close_to_their_action_for_minilm_not_for_words(minilm):
    train = [(a.name, t) for a in ACTIONS for t in a.train_paraphrases]
    test = [(a.name, a.test_paraphrases[0]) for a in ACTIONS]
    words = LearnedTextEncoder(LearnedTextEncoder.build_vocab([t for _, t in train]))
    test_ids = [i for _, t in test for i in words.token_ids(t)]
    assert test_ids.count(words.index["<unk>"]) / len(test_ids) > 0.3  # measured 31 / 75 words unknown

    def pooled(texts):
        out = minilm.encode(texts)
        mean = (out.hidden * out.mask[..., None]).sum(1) / out.mask.sum(1, keepdim=True)  # (B, D)
        return torch.nn.functional.normalize(mean, dim=-1)

    nearest = (pooled([t for _, t in test]) @ pooled([t for _, t in train]).T).argmax(1)
    correct = sum(train[j][0] == name for (name, _), j in zip(test, nearest.tolist()))
    assert correct >= 11, correct  # measured 12 / 14 (misses: point_down, nod)


def test_bad_inputs_name_the_fault(minilm):
    with pytest.raises(ValueError, match="unknown prompt mode 'strucutred'.*structured, global, brief"):
        encode_prompts(PROMPTS, minilm, "strucutred")
    with pytest.raises(TypeError, match="prompt 1 is a str"):
        encode_prompts([PROMPTS[0], "waves"], minilm)
    with pytest.raises(ValueError, match="prompt 0 has no duration"):
        encode_prompts([StructuredPrompt("A person.", (Phase(0.0, 1.0, "nods"),))], minilm)
    bad = to_json(PROMPTS[1]) | {"phases": [{"start": 0.0, "end": 1.0, "txt": "nods"}]}
    assert structured_prompts([to_json(p) for p in PROMPTS]) == PROMPTS
    with pytest.raises(PromptError, match=r"batch\.prompt\[1\].*unknown field 'txt'"):
        structured_prompts([to_json(PROMPTS[0]), bad])


def test_text_config_checks_and_composes_into_omegaconf():
    assert TextConfig().check() == []
    problems = dict(TextConfig(encoder="t5", prompt_mode="flat", max_tokens=4).check())
    assert set(problems) == {"encoder", "prompt_mode", "max_tokens"} and "minilm, umt5, learned" in problems["encoder"]
    assert dict(TextConfig(max_tokens=1024).check())["max_tokens"].startswith("MiniLM has 512 positions")
    merged = OmegaConf.merge(OmegaConf.structured(TextConfig), {"encoder": "learned", "max_tokens": 64})
    assert OmegaConf.to_object(merged) == TextConfig(encoder="learned", max_tokens=64)
