"""End to end on real SynthAvatar clips: batch -> codec latents + conditions -> DiT -> flow-matching loss
(+ localisation loss) -> gradients; and sampling with dual CFG back to pixels."""
import pytest
import torch
from omegaconf import OmegaConf

from configs.loader import load_config
from datamodules.synth_avatar import SynthAvatarDataset, SynthAvatarSource, collate
from models.codec_factory import build_codec
from models.conditioning import ConditionEncoder, build_model
from models.flow_matching import FlowMatchingConfig, drop_modalities, flow_matching_loss
from models.sampling import sample


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    cfg = load_config(None, [f"data.root={root / 'data'}", "data.duration=1.2", "data.num_train=3",
                             "data.num_val=1", "data.num_test=1", "data.max_phases=2", "model.preset=tiny",
                             f"model.codec.cache_dir={root / 'codec'}", "model.codec.channels=8",
                             "model.visual.enabled=true", "model.visual.num_queries=5",
                             "model.visual.encoder_dim=16", "model.visual.qformer_dim=16",
                             "model.visual.loc_blocks=[1]", "model.audio.adapter_hidden=16",
                             "model.dit.phase_window_bias=true"])
    data_cfg = cfg.data  # the data code reads DictConfig sections; the model code typed dataclasses
    cfg = OmegaConf.to_object(cfg)
    codec = build_codec(cfg.model.codec, SynthAvatarSource(data_cfg).fit_frames(progress=False), progress=False)
    encoder = ConditionEncoder(cfg.model, codec)
    batch = collate([SynthAvatarDataset(data_cfg, "train")[i] for i in range(2)])
    return cfg, codec, encoder, batch


def test_batch_becomes_latents_and_time_tagged_conditions(setup):
    cfg, codec, encoder, batch = setup
    x0, cond = encoder.prepare(batch)
    T = codec.valid_num_frames(batch.video.shape[1])       # 30 frames -> 29 = 4*7 + 1
    assert T == 29 and x0.shape == (2, 8, 8, 8, 8)           # (B, C, F, h, w): 8 latent frames of 8x8
    assert cond.audio.shape == (2, T, cfg.model.audio.feature_dim)
    assert cond.region_tokens.shape == (2, 8 * 4 * 4, len(cfg.model.visual.regions))
    # phase tokens carry their prompt windows, rescaled from the 30-frame clip to the 29 kept frames
    prompt = batch.prompt[0]
    phase1 = cond.text_phase[0] == 1
    window = cond.text_window[0][phase1][0]
    expected = torch.tensor([prompt["phases"][0]["start"], prompt["phases"][0]["end"]]) / 1.2 * 30 / 29
    torch.testing.assert_close(window, expected)
    assert (cond.text_phase[0][~cond.text_is_phase[0]] == 0).all()


def test_training_step_reaches_every_trainable_module_and_sampling_decodes(setup):
    cfg, codec, encoder, batch = setup
    torch.manual_seed(0)
    model = build_model(cfg.model, codec, encoder.text_encoder.dim)
    assert model.cfg.in_channels == 8 and model.cfg.text_dim == 384 and model.cfg.temporal_stride == 4
    x0, cond = encoder.prepare(batch)
    fm = FlowMatchingConfig()
    out = flow_matching_loss(lambda x, t, c: model(x, t, c, return_aux=True), x0,
                             drop_modalities(cond, fm, torch.Generator().manual_seed(0)), fm)
    loss = out["loss"] + cfg.model.visual.loc_weight * out["aux"].loc_loss
    loss.backward()
    # the zero-init head gets a gradient first; everything else is reached once it is non-zero
    assert model.head.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in codec.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.zero_grad()
    out = flow_matching_loss(lambda x, t, c: model(x, t, c, return_aux=True), x0, cond, fm)
    (out["loss"] + out["aux"].loc_loss).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []
    latents = sample(model, torch.randn_like(x0), cond, steps=2, solver="heun", text_scale=2.0, audio_scale=2.0,
                     first_frame=x0[:, :, :1])
    video = codec.decode(latents)
    assert video.shape == (2, 3, 29, 64, 64) and torch.isfinite(video).all() and video.abs().max() <= 1
