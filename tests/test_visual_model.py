"""Visual Adapter (SyncDreamer): zero-init identity, explicit-probs path = entry point, keep masking,
localisation loss on constructed cases, region-mask downsampling, frozen pretrained encoder, config checks."""
import json

import pytest
import torch
from omegaconf import OmegaConf

from models.visual import (
    IdentityTokens,
    PretrainedReferenceEncoder,
    VisualAdapter,
    VisualConfig,
    VisualCrossAttention,
    localisation_loss,
    region_masks_to_tokens,
    resolve_loc_blocks,
    select_region_masks,
)

DIM, HEADS, K, R = 32, 4, 10, 5


def _ids(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return IdentityTokens(torch.randn(B, K, DIM, generator=g), torch.arange(K) // (K // R))


def _cross(seed=0, randomise_o=False):
    torch.manual_seed(seed)
    block = VisualCrossAttention(DIM, HEADS)
    if randomise_o:
        torch.nn.init.normal_(block.o.weight, std=0.2)
        torch.nn.init.normal_(block.o.bias, std=0.2)
    return block


# ----------------------------------------------------------------------------- VisualCrossAttention

def test_zero_init_residual_is_exactly_zero_and_ignores_the_reference_but_o_gets_gradient():
    block = _cross()
    x = torch.randn(2, 6, DIM)
    out_a, _ = block(x, _ids(seed=1))
    out_b, _ = block(x, _ids(seed=2))
    assert torch.equal(out_a, torch.zeros_like(out_a)) and torch.equal(out_a, out_b)
    out, _ = block(x, _ids(seed=1))  # a linear readout: a square would have zero gradient at 0
    (out * torch.randn_like(out)).sum().backward()
    assert block.o.weight.grad.abs().sum() > 0  # training can leave the identity
    assert block.q.weight.grad is None or block.q.weight.grad.abs().sum() == 0  # nothing upstream moves yet


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_explicit_probs_path_matches_entry_point(backend):
    block = _cross(randomise_o=True)
    x, ids = torch.randn(2, 6, DIM), _ids()
    region = torch.rand(2, 6, R) > 0.5
    plain, no_loss = block(x, ids, backend=backend)
    explicit, loss = block(x, ids, backend=backend, query_region=region)
    assert no_loss is None and loss.dim() == 0 and 0.0 < loss.item() < 1.0
    assert plain.abs().max() > 1e-3  # o was randomised: the comparison is not 0 == 0
    torch.testing.assert_close(explicit, plain)
    loss.backward()  # the loss bypasses o, so it trains q and k even while o is still zero-initialised
    assert block.q.weight.grad.abs().sum() > 0 and block.k.weight.grad.abs().sum() > 0


def test_keep_false_zeroes_exactly_that_sample_and_drops_it_from_the_loss():
    block = _cross(randomise_o=True)
    x, ids = torch.randn(3, 6, DIM), _ids(B=3)
    region = torch.rand(3, 6, R) > 0.5
    keep = torch.tensor([True, False, True])
    out, loss = block(x, ids, keep=keep, query_region=region)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert out[0].abs().min() > 0 and out[2].abs().min() > 0
    plain, _ = block(x, ids, keep=keep)
    torch.testing.assert_close(out, plain)
    kept = [0, 2]
    _, loss_kept = block(x[kept], IdentityTokens(ids.tokens[kept], ids.token_region), query_region=region[kept])
    torch.testing.assert_close(loss, loss_kept)


def test_masked_sample_residual_is_zero_even_with_nonzero_bias():
    # The attention output of a fully masked sample is 0, so o.bias alone would remain: the residual
    # must still be exactly 0, and gradients must not reach the masked sample's identity tokens.
    block = _cross(randomise_o=True)
    assert block.o.bias.abs().min() > 0
    ids = _ids()
    ids.tokens.requires_grad_()
    out, _ = block(torch.randn(2, 4, DIM), ids, keep=torch.tensor([False, True]))
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    out.sum().backward()
    assert torch.equal(ids.tokens.grad[0], torch.zeros_like(ids.tokens.grad[0]))
    assert ids.tokens.grad[1].abs().sum() > 0


# ------------------------------------------------------------------------------- localisation_loss

def _probs_on(token_sets, B=1, H=2, K_=4):
    """probs (B, H, L, K) spreading each query's mass uniformly over the given token indices."""
    p = torch.zeros(B, H, len(token_sets), K_)
    for i, toks in enumerate(token_sets):
        p[:, :, i, toks] = 1.0 / len(toks)
    return p


TOKEN_REGION = torch.tensor([0, 0, 1, 1])  # 2 regions x 2 tokens


def test_loss_is_zero_when_mass_stays_in_own_region_and_one_when_it_all_leaves():
    region = torch.tensor([[[True, False], [False, True], [True, True]]])  # q2 lies in both regions
    own = _probs_on([[0, 1], [2, 3], [0, 3]])
    other = _probs_on([[2, 3], [0], [2, 3]])  # q2 is inside both: its mass never leaves
    assert localisation_loss(own, region, TOKEN_REGION).item() == 0.0
    torch.testing.assert_close(localisation_loss(other[:, :, :2], region[:, :2], TOKEN_REGION), torch.tensor(1.0))
    torch.testing.assert_close(localisation_loss(other, region, TOKEN_REGION), torch.tensor(2 / 3))


def test_partial_mass_gives_the_leaked_fraction():
    probs = torch.tensor([0.5, 0.2, 0.3, 0.0]).view(1, 1, 1, 4)
    region = torch.tensor([[[True, False]]])
    torch.testing.assert_close(localisation_loss(probs, region, TOKEN_REGION), torch.tensor(0.3))


def test_queries_outside_every_region_and_invalid_samples_do_not_count():
    region = torch.tensor([[[True, False], [False, False]]] * 2)
    base = _probs_on([[0, 1], [0, 1]], B=2)
    changed = _probs_on([[0, 1], [2, 3]], B=2)  # only the outside query moves its mass
    assert localisation_loss(base, region, TOKEN_REGION) == localisation_loss(changed, region, TOKEN_REGION) == 0
    bad = base.clone()
    bad[1] = _probs_on([[2, 3], [2, 3]])[0]  # sample 1 leaks fully, but it is invalid
    valid = torch.tensor([True, False])
    assert localisation_loss(bad, region, TOKEN_REGION, valid).item() == 0.0
    assert localisation_loss(bad, region, TOKEN_REGION).item() == pytest.approx(0.5)
    none = torch.zeros_like(region)
    probs = base.clone().requires_grad_()
    empty = localisation_loss(probs, none, TOKEN_REGION)
    empty.backward()  # no counted query: 0, still differentiable
    assert empty.item() == 0.0 and torch.equal(probs.grad, torch.zeros_like(probs))


def test_gradient_descent_on_queries_and_keys_reduces_the_loss():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 8, 16, generator=g, requires_grad=True)
    k = torch.randn(1, 2, 4, 16, generator=g, requires_grad=True)
    region = torch.rand(1, 8, 2, generator=g) > 0.4
    region[0, 0] = torch.tensor([True, False])
    opt = torch.optim.SGD([q, k], lr=1.0)

    def loss_fn():
        return localisation_loss(torch.softmax(q @ k.transpose(-1, -2) / 4, -1), region, TOKEN_REGION)
    start = loss_fn().item()
    for _ in range(100):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert start > 0.2 and loss_fn().item() < 0.3 * start


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="query_region"):
        localisation_loss(torch.rand(1, 1, 3, 4), torch.ones(1, 2, 2, dtype=torch.bool), TOKEN_REGION)
    with pytest.raises(ValueError, match="token_region"):
        localisation_loss(torch.rand(1, 1, 3, 4), torch.ones(1, 3, 1, dtype=torch.bool), TOKEN_REGION)


# ------------------------------------------------------------------------------------ region masks

def test_region_masks_downsample_causal_first_frame_by_hand():
    # T = 5 frames, temporal stride 2, causal: latents {0}, {1, 2}, {3, 4}; 4x4 pixels, stride 2 -> 2x2 tokens.
    m = torch.zeros(1, 2, 5, 4, 4, dtype=torch.bool)
    m[0, 0, 0, :2, :2] = True        # region 0: top-left token of latent 0
    m[0, 1, 1, :2, 2:] = True        # region 1: top-right block in 1 of 2 frames -> 0.5 -> inside latent 1
    m[0, 1, 3, 3, 0] = True          # 1 pixel of 8 (frames 3, 4) -> 0.125 -> outside latent 2
    m[0, 0, 4, 2:, 2:] = True        # full block in 1 of 2 frames of latent 2 -> inside
    tok = region_masks_to_tokens(m, num_latent_frames=3, temporal_stride=2, causal_first=True, spatial_stride=2)
    assert tok.shape == (1, 12, 2)
    expected = torch.zeros(1, 12, 2, dtype=torch.bool)
    expected[0, 0, 0] = True                     # latent 0, row 0, col 0
    expected[0, 4 + 1, 1] = True                 # latent 1, row 0, col 1
    expected[0, 8 + 3, 0] = True                 # latent 2, row 1, col 1
    assert torch.equal(tok, expected)
    strict = region_masks_to_tokens(m, 3, 2, True, 2, fraction=0.6)
    assert strict[0, 0, 0] and not strict[0, 5, 1] and not strict[0, 11, 0]


def test_region_masks_without_causal_frame_and_rectangular_stride():
    m = torch.zeros(1, 1, 4, 2, 6, dtype=torch.bool)  # 2 latents x (frames 0-1, 2-3); tokens 1x2 of 2x3 px
    m[0, 0, 2, :, 3:] = True  # frame 2 only, right token: 6 of 12 pixel-frames
    tok = region_masks_to_tokens(m, 2, 2, False, (2, 3))
    assert tok[0, :, 0].tolist() == [False, False, False, True]


def test_region_masks_reject_wrong_frame_count_and_stride():
    m = torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="4 frames.*need 5"):
        region_masks_to_tokens(m, 3, 2, True, 2)
    with pytest.raises(ValueError, match="spatial stride"):
        region_masks_to_tokens(m, 2, 2, False, 3)


def test_select_region_masks_reorders_dataset_masks():
    gt = torch.zeros(1, 3, 5, 4, 4, dtype=torch.bool)  # (B, T, REGIONS, H, W)
    gt[:, :, 1] = True  # mouth
    names = ("eyes", "mouth", "hair", "face", "hands")
    sel = select_region_masks(gt, names, ["hands", "mouth"])
    assert sel.shape == (1, 2, 3, 4, 4) and not sel[:, 0].any() and sel[:, 1].all()
    with pytest.raises(ValueError, match="nose"):
        select_region_masks(gt, names, ["nose"])
    with pytest.raises(ValueError, match="over"):
        select_region_masks(gt, names[:4], ["mouth"])  # a batch whose names do not match its masks


# ------------------------------------------------------------------------------------------ adapter

def test_patch_adapter_tokens_depend_on_reference_and_train():
    cfg = VisualConfig(num_queries=10, encoder_dim=16, encoder_heads=2, qformer_heads=4, encoder_layers=1,
                       qformer_layers=1)
    torch.manual_seed(0)
    adapter = VisualAdapter(cfg, dim=DIM, latent_channels=4)
    lat = torch.randn(2, 4, 1, 4, 6)
    ids = adapter(reference_latent=lat)
    assert ids.tokens.shape == (2, 10, DIM)
    assert ids.token_region.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert not torch.allclose(ids.tokens[0], ids.tokens[1])  # different references -> different tokens
    ids.tokens.square().mean().backward()
    assert adapter.qformer.queries.grad.abs().sum() > 0 and adapter.encoder.embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reference_latent"):
        adapter(reference_image=torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 4, 1, h, w\)"):
        adapter(reference_latent=torch.randn(2, 4, 4, 6))
    with pytest.raises(ValueError, match="not divisible by patch"):
        adapter(reference_latent=torch.randn(2, 4, 1, 5, 6))


def _tiny_dinov2(path, preprocessor=None):
    from transformers import Dinov2Config, Dinov2Model
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)
    Dinov2Model(cfg).save_pretrained(path)
    if preprocessor:
        (path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return str(path)


def test_pretrained_encoder_is_frozen_while_the_qformer_trains(tmp_path):
    cfg = VisualConfig(encoder="pretrained", encoder_path=_tiny_dinov2(tmp_path), num_queries=5,
                       qformer_layers=1, qformer_heads=4)
    adapter = VisualAdapter(cfg, dim=DIM, latent_channels=4).train()
    assert not adapter.encoder.model.training
    encoder_before = {k: v.clone() for k, v in adapter.encoder.state_dict().items()}
    queries_before = adapter.qformer.queries.detach().clone()
    image = torch.rand(2, 3, 24, 24) * 2 - 1  # resized to the model's 32x32 -> 16 patch tokens
    assert adapter.encoder(image).shape == (2, 16, 16)
    opt = torch.optim.AdamW([p for p in adapter.parameters() if p.requires_grad], lr=1e-2)
    adapter(reference_image=image).tokens.square().mean().backward()
    opt.step()
    assert all(torch.equal(v, adapter.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert not any(p.requires_grad for p in adapter.encoder.parameters())
    assert not torch.equal(queries_before, adapter.qformer.queries)
    with pytest.raises(ValueError, match="reference_image"):
        adapter(reference_latent=torch.zeros(1, 4, 1, 4, 4))


def test_pretrained_encoder_normalisation_reads_preprocessor_stats(tmp_path):
    enc = PretrainedReferenceEncoder(_tiny_dinov2(tmp_path / "half", {"image_mean": [0.5] * 3,
                                                                      "image_std": [0.5] * 3}))
    img = torch.rand(1, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(enc.normalise(img), img)  # mean = std = 0.5 maps [-1, 1] onto itself
    imagenet = PretrainedReferenceEncoder(_tiny_dinov2(tmp_path / "plain"))
    torch.testing.assert_close(imagenet.normalise(torch.ones(1, 3, 1, 1)).flatten(),
                               torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))


def test_pretrained_encoder_missing_path_names_it(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model.*does not exist"):
        PretrainedReferenceEncoder(str(missing))
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match="no_such_model.*config.json"):
        PretrainedReferenceEncoder(str(missing))


# ------------------------------------------------------------------------------------------- config

def test_config_check_catches_bad_queries_and_regions_and_composes_with_omegaconf():
    assert VisualConfig().check() == []
    problems = dict(VisualConfig(num_queries=21).check())
    assert "num_queries" in problems and "5" in problems["num_queries"]
    problems = dict(VisualConfig(regions=["eyes", "eyes"], num_queries=20).check())
    assert "duplicates" in problems["regions"]
    assert "encoder_path" in dict(VisualConfig(encoder="pretrained").check())
    with pytest.raises(ValueError, match="visual.num_queries"):
        VisualAdapter(VisualConfig(num_queries=21), dim=DIM, latent_channels=4)
    merged = OmegaConf.merge(OmegaConf.structured(VisualConfig), {"regions": ["eyes", "mouth"], "loc_blocks": [3]})
    assert OmegaConf.to_object(merged).check() == []


def test_regions_the_data_source_lacks_fail_at_start_up_naming_the_key():
    """Which regions exist is the data source's business (SynthAvatar: eyes, mouth, hair, face, hands)."""
    from common.errors import ConfigError
    from configs.schema import DataConfig
    from datamodules.synth_avatar import SynthAvatarSource
    source = SynthAvatarSource(DataConfig())
    source.check_regions(["mouth", "hands"])
    with pytest.raises(ConfigError, match=r"model.visual.regions.*\['nose'\].*synthavatar"):
        source.check_regions(["eyes", "nose"])


def test_resolve_loc_blocks_middle_third_or_explicit():
    assert resolve_loc_blocks(VisualConfig(), 30) == list(range(10, 20))
    assert resolve_loc_blocks(VisualConfig(), 3) == [1]
    assert resolve_loc_blocks(VisualConfig(loc_blocks=[5, 2, 5]), 30) == [2, 5]
    with pytest.raises(ValueError, match="loc_blocks.*30"):
        resolve_loc_blocks(VisualConfig(loc_blocks=[30]), 30)
