"""The assembled model: every new module (PACA phase embeddings and window bias, audio adapter, visual
adapter) starts as a no-op on a loaded Wan backbone, and each one does act once trained."""
import pytest
import torch

from models.audio import AudioConfig
from models.contracts import Conditions
from models.convert import load_wan_weights
from models.dit import WanDiT
from models.dit_config import DiTConfig
from models.frames import num_video_frames
from models.visual import VisualConfig

diffusers = pytest.importorskip("diffusers")
from tests.test_dit import TINY, _inputs, _randomise  # noqa: E402

AUDIO = AudioConfig(feature_dim=10, tokens_per_frame=2, adapter_hidden=16, dynamics_hidden=8)
VISUAL = VisualConfig(encoder_dim=16, encoder_layers=1, encoder_heads=2, num_queries=5, qformer_layers=1,
                      qformer_heads=2, loc_blocks=[1])


def _config(**overrides) -> DiTConfig:
    values = dict(dim=32, num_heads=2, ffn_dim=64, num_layers=2, in_channels=8, out_channels=8, text_dim=16,
                  freq_dim=32, mask_text_padding=False, phase_embedding=False)
    return DiTConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("wan")
    model = diffusers.WanTransformer3DModel(**TINY)
    _randomise(model)
    model.save_pretrained(path)
    return path


def _full_model(wan_dir):
    model = WanDiT(_config(phase_embedding=True, phase_window_bias=True, reference_concat=True), AUDIO, VISUAL).eval()
    report = load_wan_weights(model, wan_dir)
    return model, report


def _cond(text, B=2, F=3, seed=5):
    g = torch.Generator().manual_seed(seed)
    L = F * 2 * 3
    regions = torch.zeros(B, L, len(VISUAL.regions), dtype=torch.bool)
    regions[:, ::2, 1] = True  # every other token is "mouth"
    return Conditions(
        text=text,
        text_phase=torch.tensor([[0, 0, 1, 1, 2]] * B),
        text_window=torch.tensor([[[0, 1], [0, 1], [0, .5], [0, .5], [.5, 1]]] * B, dtype=torch.float32),
        text_is_phase=torch.tensor([[False, False, True, True, True]] * B),
        audio=torch.randn(B, num_video_frames(F, 4, True), AUDIO.feature_dim, generator=g),
        region_tokens=regions)


def test_new_modules_are_reported_and_start_as_exact_no_ops(wan_dir):
    backbone = WanDiT(_config()).eval()
    load_wan_weights(backbone, wan_dir)
    full, report = _full_model(wan_dir)
    new = report["new_modules"]
    assert any(k.startswith("phase_embedding") for k in new)
    assert any(".audio_attn." in k for k in new) and any(".visual_attn." in k for k in new)
    assert any(k.endswith("cross_attn.window_bias") for k in new)
    assert any(k.startswith("reference_embedding") for k in new)
    assert not any(k.startswith(("blocks.0.self_attn", "head.", "patch_embedding")) for k in new)
    x, t, text = _inputs()
    with torch.no_grad():
        expected = backbone(x, t, Conditions(text=text))
        got, aux = full(x, t, _cond(text), return_aux=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert aux.loc_loss is not None and 0 < aux.loc_loss < 1


def _perturb(module: torch.nn.Module, seed=7):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


def test_each_trained_module_changes_the_output_and_dropping_it_restores_the_backbone(wan_dir):
    full, _ = _full_model(wan_dir)
    x, t, text = _inputs()
    cond = _cond(text)
    with torch.no_grad():
        base = full(x, t, cond)
        for name, part in (("audio", [b.audio_attn for b in full.blocks]),
                           ("image", [b.visual_attn for b in full.blocks] + [full.reference_embedding])):
            for module in part:
                _perturb(module)
            changed = full(x, t, cond)
            assert (changed - base).abs().max() > 1e-4, name
            dropped = full(x, t, cond.replace(**{f"keep_{name}": torch.tensor([False, False])}))
            torch.testing.assert_close(dropped, base, rtol=0, atol=0)
            base = changed


def test_phase_embeddings_and_window_bias_act_only_through_phase_tokens(wan_dir):
    full, _ = _full_model(wan_dir)
    x, t, text = _inputs()
    cond = _cond(text)
    with torch.no_grad():
        before = full(x, t, cond)
        full.phase_embedding.weight.normal_(0, 0.5)
        after = full(x, t, cond)
        assert (after - before).abs().max() > 1e-4
        all_base = cond.replace(text_phase=torch.zeros_like(cond.text_phase))
        full.phase_embedding.weight[0] = 0  # the base row is irrelevant when no token uses the others
        torch.testing.assert_close(full(x, t, all_base), before, rtol=0, atol=0)
        after = full(x, t, cond)
        for block in full.blocks:
            block.cross_attn.window_bias.fill_(3.0)
        biased = full(x, t, cond)
        assert (biased - after).abs().max() > 1e-4
        outside = cond.replace(text_window=torch.full_like(cond.text_window, 2.0))  # windows after the clip
        torch.testing.assert_close(full(x, t, outside), after)


def test_text_attention_record_is_a_distribution_over_text_tokens(wan_dir):
    full, _ = _full_model(wan_dir)
    x, t, text = _inputs()
    with torch.no_grad():
        _, aux = full(x, t, _cond(text).replace(record_text_attention=True), return_aux=True)
    maps = aux.text_attention
    assert sorted(maps) == [0, 1] and maps[0].shape == (2, 18, 5)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 18))


def test_localisation_loss_trains_the_visual_path(wan_dir):
    full, _ = _full_model(wan_dir)
    _perturb(full.blocks[1].visual_attn)
    full.train()
    x, t, text = _inputs()
    _, aux = full(x, t, _cond(text), return_aux=True)
    aux.loc_loss.backward()
    assert full.blocks[1].visual_attn.q.weight.grad.abs().sum() > 0
    assert full.visual_adapter.qformer.queries.grad.abs().sum() > 0
    grad0 = full.blocks[0].visual_attn.q.weight.grad  # block 0: no loss, and its zero-init output blocks the path
    assert grad0 is None or grad0.abs().sum() == 0


def test_phase_window_bias_starts_at_its_configured_value():
    """phase_window_bias_init (issue 15 recipe search): every block's per-head bias starts there; the default
    keeps the zero start, so a converted Wan model is unchanged."""
    started = WanDiT(_config(phase_window_bias=True, phase_window_bias_init=2.5), AUDIO, VISUAL)
    zero = WanDiT(_config(phase_window_bias=True), AUDIO, VISUAL)
    assert all(torch.equal(b.cross_attn.window_bias, torch.full_like(b.cross_attn.window_bias, 2.5))
               for b in started.blocks)
    assert all(not b.cross_attn.window_bias.any() for b in zero.blocks)
