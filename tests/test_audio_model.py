"""Audio conditioning: encoders (frozen, per video frame), dynamics windows, adapter spans and locality,
depth-scaled zero-init cross-attention (identity at init, exact depth ratio, frame-local, dropout, grads)."""
import math

import numpy as np
import pytest
import torch

from models.audio import (
    AudioAdapter,
    AudioConfig,
    AudioCrossAttention,
    AudioDynamicsEncoder,
    AudioTokens,
    LogMelEnergyEncoder,
    Wav2Vec2Encoder,
    build_audio_encoder,
    depth_scale,
    latent_frame_spans,
)
from synthavatar.audio import frame_envelope, sample_schedule, synthesize

DIM, HEADS = 16, 2


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-zero weights everywhere (undoes zero-init) so every path is live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


# --------------------------------------------------------------------------- config


def test_default_config_is_valid_and_bad_values_are_named():
    assert AudioConfig().check() == []
    bad = AudioConfig(encoder="mfcc", tokens_per_frame=0, context_frames=-1, gamma=-0.5, wav2vec2_layers="mid")
    fields = {name for name, _ in bad.check()}
    assert fields == {"encoder", "tokens_per_frame", "context_frames", "gamma", "wav2vec2_layers"}
    assert [f for f, _ in AudioConfig(encoder="wav2vec2").check()] == ["encoder_path"]


# --------------------------------------------------------------------------- encoders


def test_logmel_encoder_is_per_video_frame_deterministic_and_tracks_energy():
    rng = np.random.default_rng(0)
    wave = synthesize(sample_schedule(rng, 2.0))  # 2 s -> 50 frames
    silent_then_speech = wave.copy()
    silent_then_speech[:16000] = 0.0
    batch = torch.from_numpy(np.stack([wave, silent_then_speech]))
    enc = LogMelEnergyEncoder(n_mels=80)
    feats = enc(batch)
    assert feats.shape == (2, 50, 81) and enc.feature_dim == 81
    assert torch.equal(feats, enc(batch))  # deterministic
    assert feats[0].abs().mean() < 3.0  # roughly unit scale, not raw dB
    env = frame_envelope(wave, 16000, 25, 50)
    expected = (20 * np.log10(np.maximum(env, 1e-5)) + 40) / 25
    np.testing.assert_allclose(feats[0, :, -1].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert feats[1, :25, -1].max() < feats[0, :25, -1].max()  # zeroed first second is quieter
    assert enc(batch, num_frames=37).shape == (2, 37, 81)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=8)
    path = tmp_path_factory.mktemp("w2v")
    Wav2Vec2Model(config).save_pretrained(path)
    return path


def test_wav2vec2_encoder_loads_local_dir_and_outputs_video_rate_features(tiny_wav2vec2):
    cfg = AudioConfig(encoder="wav2vec2", encoder_path=str(tiny_wav2vec2), feature_dim=32)
    enc = build_audio_encoder(cfg)
    assert isinstance(enc, Wav2Vec2Encoder)
    wave = torch.randn(2, 16000)  # 1 s -> 49 wav2vec2 frames -> 25 video frames
    feats = enc(wave)
    assert feats.shape == (2, 25, 32)
    assert enc.layer_logits.shape == (3,)  # CNN projection + 2 transformer layers
    single = Wav2Vec2Encoder(str(tiny_wav2vec2), layers="last")
    assert single.layer_logits is None and single(wave, num_frames=10).shape == (2, 10, 32)


def test_wav2vec2_backbone_stays_frozen_under_training(tiny_wav2vec2):
    enc = Wav2Vec2Encoder(str(tiny_wav2vec2)).train()
    assert not enc.backbone.training  # dropout off although the wrapper is in train mode
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    before = {k: v.clone() for k, v in enc.backbone.state_dict().items()}
    wave = torch.randn(1, 8000)
    out = enc(wave)
    torch.testing.assert_close(out, enc(wave), rtol=0, atol=0)  # eval mode: deterministic
    opt = torch.optim.SGD(enc.parameters(), lr=1.0)
    out.square().sum().backward()
    assert enc.layer_logits.grad is not None and enc.layer_logits.grad.abs().sum() > 0
    opt.step()
    after = enc.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_wav2vec2_bad_paths_and_dims_name_the_fault(tmp_path, tiny_wav2vec2):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model.*does not exist"):
        Wav2Vec2Encoder(str(missing))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path.name}.*config.json is missing"):
        Wav2Vec2Encoder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="encoder_path is empty"):
        Wav2Vec2Encoder("")
    cfg = AudioConfig(encoder="wav2vec2", encoder_path=str(tiny_wav2vec2), feature_dim=768)
    with pytest.raises(ValueError, match="feature_dim=768.*outputs 32"):
        build_audio_encoder(cfg)
    with pytest.raises(ValueError, match="unknown audio.encoder 'mfcc'"):
        build_audio_encoder(AudioConfig(encoder="mfcc"))


# --------------------------------------------------------------------------- dynamics


def test_dynamics_weights_start_uniform_and_lie_in_unit_interval():
    dyn = AudioDynamicsEncoder(feature_dim=5, k=3, hidden=8)
    feats = torch.randn(2, 20, 5)
    out, w = dyn(feats)
    assert torch.equal(w, torch.full((2, 20), 0.5))  # zero-init head: no frame favoured yet
    _randomise(dyn)
    out, w = dyn(feats * 10)
    assert w.shape == (2, 20) and (w >= 0).all() and (w <= 1).all() and w.std() > 0
    torch.testing.assert_close(out, feats * 10 * w[..., None])


def test_dynamics_window_is_exactly_plus_minus_k_with_replicated_edges():
    k, T, t = 3, 20, 10
    dyn = AudioDynamicsEncoder(feature_dim=4, k=k, hidden=8)
    _randomise(dyn)
    feats = torch.randn(1, T, 4)
    _, w = dyn(feats)

    def w_after_bumping(frame):
        bumped = feats.clone()
        bumped[:, frame] += 5.0
        return dyn(bumped)[1][0, t]

    for frame in (t - k, t + k):
        assert w_after_bumping(frame) != w[0, t]
    for frame in (t - k - 1, t + k + 1):
        assert w_after_bumping(frame) == w[0, t]
    # frame 0 sees [A0, A0, A0, A0, A1, A2, A3]: the missing left neighbours are copies of A0
    window = torch.cat([feats[0, 0]] * 4 + [feats[0, 1], feats[0, 2], feats[0, 3]])
    torch.testing.assert_close(w[0, 0], torch.sigmoid(dyn.mlp(window))[0])


# --------------------------------------------------------------------------- adapter


def test_latent_frame_spans_wan_causal_and_plain():
    spans = latent_frame_spans(25, 4, causal_first=True)  # 97 video frames
    assert spans.shape == (25, 2)
    assert spans[0].tolist() == [0, 0] and spans[1].tolist() == [1, 4] and spans[-1].tolist() == [93, 96]
    assert torch.equal(spans[1:, 0], spans[:-1, 1] + 1)  # contiguous, no gaps or overlaps
    plain = latent_frame_spans(25, 4, causal_first=False)  # 100 video frames
    assert plain[0].tolist() == [0, 3] and plain[-1].tolist() == [96, 99]
    with pytest.raises(ValueError, match="stride"):
        latent_frame_spans(3, 0)


def _adapter(dynamics=True, context=2, stride=4):
    cfg = AudioConfig(feature_dim=6, tokens_per_frame=3, context_frames=context, adapter_hidden=16,
                      dynamics=dynamics, dynamics_hidden=8)
    torch.manual_seed(0)
    return AudioAdapter(cfg, DIM, stride=stride)


def test_adapter_tokens_and_key_windows_belong_to_their_latent_frame():
    adapter = _adapter()
    feats, F = torch.randn(2, 17, 6), 5  # causal: 1 + 4*4 = 17 video frames
    times = torch.linspace(0, 1, F).expand(2, F)
    out = adapter(feats, F, 4, True, times)
    assert out.tokens.shape == (2, F * 3, DIM) and out.dynamics_weights.shape == (2, 17)
    assert torch.equal(out.key_window[0, :, 0], times[0].repeat_interleave(3))
    assert torch.equal(out.key_window[..., 0], out.key_window[..., 1])
    # window of latent frame 2 (span 5..8) with context 2: video frames 3..10 exactly
    assert adapter.window_indices(F, True, 17)[2].tolist() == list(range(3, 11))
    assert adapter.window_indices(F, True, 17)[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 2]  # replicated frame 0


def test_adapter_reads_only_its_window_and_dynamics_switch_is_identity():
    adapter = _adapter(dynamics=False)
    assert adapter.dynamics is None
    feats, F = torch.randn(1, 17, 6), 5
    times = torch.linspace(0, 1, F)[None]
    base = adapter(feats, F, 4, True, times)
    assert base.dynamics_weights is None
    bumped = feats.clone()
    bumped[:, 11] += 3.0  # inside the windows of latent frames 3 (7..14) and 4 (11..18), not 0..2
    changed = (adapter(bumped, F, 4, True, times).tokens - base.tokens).abs().reshape(F, -1).amax(-1) > 0
    assert changed.tolist() == [False, False, False, True, True]
    # a short sequence is padded by repeating its last frame; a long one is cropped
    torch.testing.assert_close(adapter(feats[:, :15], F, 4, True, times).tokens,
                               adapter(torch.cat([feats[:, :15]] + [feats[:, 14:15]] * 4, 1), F, 4, True, times).tokens)
    longer = torch.cat([feats, torch.randn(1, 8, 6)], 1)  # frames 17, 18 are context of latent frame 4
    tail_changed = longer.clone()
    tail_changed[:, 19:] += 3.0  # beyond every window: cropped
    torch.testing.assert_close(adapter(tail_changed, F, 4, True, times).tokens,
                               adapter(longer, F, 4, True, times).tokens)
    with pytest.raises(ValueError, match="built for latent stride 4, called with 2"):
        adapter(feats, F, 2, True, times)


def test_dynamics_off_feeds_raw_features_on_feeds_reweighted_ones():
    feats, F = torch.randn(1, 17, 6), 5
    times = torch.linspace(0, 1, F)[None]
    on, off = _adapter(dynamics=True), _adapter(dynamics=False)
    off.load_state_dict({k: v for k, v in on.state_dict().items() if not k.startswith("dynamics.")})
    # zero-init dynamics head: w_t = 0.5, so "on" equals "off" fed with half the features
    torch.testing.assert_close(on(feats, F, 4, True, times).tokens, off(0.5 * feats, F, 4, True, times).tokens)
    assert not torch.allclose(off(feats, F, 4, True, times).tokens, on(feats, F, 4, True, times).tokens)


# --------------------------------------------------------------------------- cross-attention


def test_depth_scale_values():
    assert depth_scale(1, 30, 1.5) == pytest.approx((1 / 30) ** 1.5) == pytest.approx(0.0060858, rel=1e-4)
    assert depth_scale(15, 30, 1.5) == pytest.approx(0.5 ** 1.5) == pytest.approx(0.3535534, rel=1e-6)
    assert depth_scale(30, 30, 1.5) == 1.0
    assert all(depth_scale(l, 30, 0.0) == 1.0 for l in (1, 15, 30))
    with pytest.raises(ValueError, match="1-based"):
        depth_scale(0, 30, 1.5)


def _frame_setup(B=2, F=4, per_frame=3, seed=0):
    """x with `per_frame` query tokens per latent frame, tokens with N_a=2 per frame, matching times."""
    g = torch.Generator().manual_seed(seed)
    times = torch.linspace(0, 1, F)
    x = torch.randn(B, F * per_frame, DIM, generator=g)
    query_time = times.repeat_interleave(per_frame).expand(B, -1)
    key_window = times.repeat_interleave(2)[None, :, None].expand(B, -1, 2)
    return x, AudioTokens(torch.randn(B, F * 2, DIM, generator=g), key_window, None), query_time


def _attn(layer=10, gamma=1.5, qk_norm=True):
    torch.manual_seed(0)
    return AudioCrossAttention(DIM, HEADS, layer_index=layer, num_layers=30, gamma=gamma, qk_norm=qk_norm)


def test_zero_init_residual_is_exactly_zero_then_scales_with_depth():
    x, tokens, qt = _frame_setup()
    deep, flat = _attn(gamma=1.5), _attn(gamma=0.0)
    assert torch.equal(deep(x, tokens, qt), torch.zeros_like(x))  # pretrained DiT untouched at init
    for module in (deep, flat):
        _randomise(module.o, seed=1)
    r_deep, r_flat = deep(x, tokens, qt), flat(x, tokens, qt)
    assert r_flat.abs().min() > 0
    torch.testing.assert_close(r_deep, r_flat * (10 / 30) ** 1.5)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_audio_of_one_latent_frame_only_reaches_that_frame(backend):
    x, tokens, qt = _frame_setup()
    attn = _attn(qk_norm=False)
    _randomise(attn.o, seed=1)
    base = attn(x, tokens, qt, backend=backend)
    edited = tokens.tokens.clone()
    edited[:, 4:6] += torch.randn(2, 2, DIM)  # N_a = 2 tokens of latent frame 2
    diff = (attn(x, AudioTokens(edited, tokens.key_window, None), qt, backend=backend) - base).abs()
    per_frame = diff.reshape(2, 4, 3, DIM).amax(dim=(0, 2, 3))  # (F,)
    assert per_frame[2] > 0 and torch.equal(per_frame[[0, 1, 3]], torch.zeros(3))


def test_dropped_audio_gives_exactly_zero_for_that_sample_only():
    x, tokens, qt = _frame_setup()
    attn = _attn()
    _randomise(attn.o, seed=1)  # o's bias is non-zero too: the mask must zero it as well
    keep = torch.tensor([True, False])
    out = attn(x, tokens, qt, keep=keep)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(out[0], attn(x, tokens, qt)[0])
    assert out[0].abs().min() > 0


def test_gradients_reach_adapter_and_dynamics_once_output_is_live():
    adapter = _adapter(dynamics=True)
    _randomise(adapter.dynamics)  # a trained dynamics head, so its first layer is on the gradient path
    attn = _attn()
    _randomise(attn.o, seed=1)
    F, per_frame = 5, 3
    times = torch.linspace(0, 1, F)
    tokens = adapter(torch.randn(2, 17, 6), F, 4, True, times.expand(2, F))
    x = torch.randn(2, F * per_frame, DIM)
    attn(x, tokens, times.repeat_interleave(per_frame).expand(2, -1)).square().sum().backward()
    for name, p in list(adapter.named_parameters()) + list(attn.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_init_attention_still_trains_its_output_projection():
    adapter = _adapter()
    attn = _attn()
    times = torch.linspace(0, 1, 5)
    tokens = adapter(torch.randn(1, 17, 6), 5, 4, True, times[None])
    attn(torch.randn(1, 10, DIM), tokens, times.repeat_interleave(2)[None]).sum().backward()
    assert attn.o.weight.grad.abs().sum() > 0 and math.isclose(attn.scale, (10 / 30) ** 1.5)
