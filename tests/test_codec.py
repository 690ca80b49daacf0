"""Latent codecs: Wan's frame rule and time convention, SynthCodec reconstruction quality on SynthAvatar,
normalisation, the content-keyed cache (hits, key changes, corrupt files), and WanVAECodec on a tiny
random diffusers AutoencoderKLWan saved to disk."""
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.synth_avatar import SynthAvatarSource, SynthFitFrames
from models import codec_synth, frames
from models.codec import CodecConfig, CodecError
from models.codec_factory import build_codec
from models.codec_synth import (
    SynthCodec,
    cache_path,
    fit_synth_codec,
    load_or_fit_synth_codec,
    load_synth_codec,
    synth_codec_key,
)
from synthavatar.dataset import ensure_split, load_clip


def frames_of(data_cfg, num_clips: int = 0):
    """The training frames SynthAvatar hands a codec fit (first `num_clips` train clips, 0 = all)."""
    return SynthAvatarSource(data_cfg).fit_frames(num_clips, progress=False)


def fingerprint_of(data_cfg, num_clips: int):
    """The same frames' identity without generating them (the key reads only the fingerprint)."""
    return SynthFitFrames(data_cfg, num_clips, paths=[])


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    err = (a - b) ** 2
    err = err.mean() if mask is None else err.mean(1)[mask].mean()  # mask: (B, T, H, W) over pixels
    return float(10 * torch.log10(4 / err))  # values in [-1, 1]: peak-to-peak 2


def random_codec(stride: int, patch: int = 4, channels: int = 6, seed: int = 0) -> SynthCodec:
    """A SynthCodec with a random orthonormal basis: frame-rule tests need no data."""
    gen = torch.Generator().manual_seed(seed)
    dim = 3 * stride * patch * patch
    q, _ = torch.linalg.qr(torch.randn(dim, channels, generator=gen))
    return SynthCodec(q.T.reshape(channels, 3 * stride, patch, patch), torch.zeros(3 * stride, patch, patch),
                      torch.linspace(2.0, 0.5, channels))


def to_video(clip: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (1, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory):
    """Six 1 s train clips (25 frames = 4*6+1) and two test clips with unseen identities (~1 s to render)."""
    root = tmp_path_factory.mktemp("synthavatar")
    cfg = OmegaConf.create({"root": str(root), "seed": 0, "resolution": 64, "fps": 25, "duration": 1.0,
                            "sample_rate": 16000, "min_phases": 1, "max_phases": 2, "num_train": 6,
                            "num_val": 0, "num_test": 2, "gen_workers": 2})
    ensure_split(cfg, "train", progress=False)
    ensure_split(cfg, "test", progress=False)
    return cfg


@pytest.fixture(scope="module")
def test_clips(data_cfg):
    return [load_clip(p) for p in ensure_split(data_cfg, "test", progress=False)]


def fit(data_cfg, **overrides) -> SynthCodec:
    cfg = CodecConfig(**overrides)
    clips = [load_clip(p)["video"] for p in ensure_split(data_cfg, "train", progress=False)]
    return fit_synth_codec(cfg, clips, progress=False)[0]


# ------------------------------------------------------------------------------------ frame rule


@pytest.mark.parametrize("stride,valid_of_100", [(1, 100), (2, 99), (4, 97)])
def test_frame_rule_is_wan_causal_and_times_are_ordered(stride, valid_of_100):
    codec = random_codec(stride)
    assert codec.valid_num_frames(100) == valid_of_100
    for num_latent in range(1, 30):
        T = codec.num_video_frames(num_latent)
        assert T == stride * (num_latent - 1) + 1 and codec.num_latent_frames(T) == num_latent
    T = codec.valid_num_frames(21)
    latents = codec.encode(torch.rand(2, 3, T, 8, 12) * 2 - 1)
    assert latents.shape == (2, 6, codec.num_latent_frames(T), 2, 3)
    assert codec.decode(latents).shape == (2, 3, T, 8, 12)
    times = codec.latent_frame_times(latents.shape[2])
    assert torch.all(times[1:] > times[:-1]) and times[0] > 0 and times[-1] < 1
    assert times[0] == pytest.approx(0.5 / T)  # latent 0 = frame 0 alone, frame i at (i + 0.5) / T
    assert torch.equal(times, frames.latent_frame_times(latents.shape[2], stride, True))
    assert random_codec(4).num_latent_frames(97) == 25


def test_latent_frame_seconds_are_the_centres_of_their_video_frames():
    codec = random_codec(4)  # 97 frames at 25 fps: latent 0 = frame 0, latent k = frames 4k-3 .. 4k
    seconds = codec.latent_frame_seconds(25, fps=25)
    expected = torch.tensor([0.5] + [4 * k - 1.0 for k in range(1, 25)]) / 25  # (mean index + 0.5) / fps
    torch.testing.assert_close(seconds, expected)
    assert seconds[-1] == pytest.approx(3.8) and seconds[-1] < 97 / 25


def test_each_latent_frame_depends_only_on_its_video_frames():
    codec, T = random_codec(4), 13  # latents <-> frames {0}, {1..4}, {5..8}, {9..12}
    video = torch.rand(1, 3, T, 8, 8) * 2 - 1
    base = codec.encode(video)
    spans = frames.latent_frame_spans(base.shape[2], 4, True)
    for frame in (0, 1, 4, 5, 12):
        bumped = video.clone()
        bumped[:, :, frame] = -bumped[:, :, frame]
        changed = (codec.encode(bumped) - base).abs().amax((0, 1, 3, 4)) > 1e-6
        owner = (spans[:, 0] <= frame) & (frame <= spans[:, 1])
        assert torch.equal(changed, owner), f"frame {frame}"


def test_bad_video_is_rejected_naming_the_rule():
    codec = random_codec(4)
    with pytest.raises(ValueError, match=r"10 frames; the frame count must be 4n\+1 .* here 9"):
        codec.encode(torch.zeros(1, 3, 10, 8, 8))
    with pytest.raises(ValueError, match=r"must be \(B, 3, T, H, W\).*transpose"):
        codec.encode(torch.zeros(1, 9, 3, 8, 8))
    with pytest.raises(ValueError, match="10x8 is not a multiple of the spatial stride 4"):
        codec.encode(torch.zeros(1, 3, 5, 10, 8))
    with pytest.raises(ValueError, match=r"latents must be \(B, 6, F, h, w\)"):
        codec.decode(torch.zeros(1, 5, 2, 2, 2))


def test_codec_is_frozen_but_differentiable_wrt_its_input():
    codec = random_codec(2)
    assert not any(p.requires_grad for p in codec.parameters()) and not codec.training
    latents = torch.randn(1, 6, 3, 2, 2, requires_grad=True)
    codec.decode(latents).sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


# --------------------------------------------------------------------------------- reconstruction


def test_synth_codec_reconstructs_held_out_clips(data_cfg, test_clips):
    codec, weak = fit(data_cfg), fit(data_cfg, channels=8)
    train_mean = torch.cat([to_video(load_clip(p)["video"]) for p in ensure_split(data_cfg, "train", progress=False)],
                           2).mean(2, keepdim=True)
    for clip in test_clips:  # unseen identities
        video = to_video(clip["video"])
        mouth, hands = (torch.from_numpy(clip["masks"][:, r])[None] for r in (1, 4))  # (1, T, H, W) each
        recon = codec.decode(codec.encode(video))
        assert recon.shape == video.shape and recon.abs().max() <= 1
        quality = psnr(recon, video)
        # Measured (fit on 6 clips) 28.4 / 29.8 dB, mouth 17.4 / 19.7, hands 17.8 / 22.4; the train-set
        # mean frame scores 13.3 / 10.8 dB, the clip's own mean frame (an oracle static codec) 25.8 / 27.2,
        # the 8-channel codec 21.3 / 23.1.
        assert quality > 26.0
        assert quality > psnr(train_mean.expand_as(video), video) + 10
        assert quality > psnr(video.mean(2, keepdim=True).expand_as(video), video) + 1
        assert psnr(recon, video, mouth) > 15.0 and psnr(recon, video, hands) > 15.0
        assert quality > psnr(weak.decode(weak.encode(video)), video) + 2  # more channels, better codec


def test_latents_are_normalised_per_channel_on_the_fit_data(data_cfg):
    codec = fit(data_cfg)
    glob = fit(data_cfg, normalize="global")
    videos = [to_video(load_clip(p)["video"]) for p in ensure_split(data_cfg, "train", progress=False)]
    z = torch.cat([codec.encode(v) for v in videos], 2)  # (1, C, sum F, h, w)
    per_channel = z.transpose(0, 1).flatten(1)
    assert per_channel.mean(1).abs().max() < 1e-3
    torch.testing.assert_close(per_channel.std(1, correction=0), torch.ones(48), atol=1e-3, rtol=0)
    zg = glob.encode(videos[0])
    assert zg[:, 0].std() > 3 * zg[:, -1].std()  # 'global' keeps PCA's energy order
    torch.testing.assert_close(glob.decode(zg), codec.decode(codec.encode(videos[0])), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- cache


def test_cache_hit_returns_identical_weights_without_refitting(data_cfg, tmp_path, monkeypatch):
    cfg = CodecConfig(cache_dir=str(tmp_path / "codec"))
    first = build_codec(cfg, frames_of(data_cfg), progress=False)
    key = synth_codec_key(cfg, frames_of(data_cfg, 6))
    info = json.loads(cache_path(cfg, key).with_suffix(".json").read_text())
    assert info["key"] == key and info["clips"] == 6 and info["frames"] == 6 * 25

    def no_fit(*args, **kwargs):
        raise AssertionError("cache miss: refitted")
    monkeypatch.setattr(codec_synth, "fit_synth_codec", no_fit)
    second = build_codec(cfg, frames_of(data_cfg), progress=False)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert not list((tmp_path / "codec").glob(".*"))  # no temporary files left behind


def test_cache_key_follows_everything_that_decides_the_fit(data_cfg):
    base = CodecConfig()
    key = synth_codec_key(base, fingerprint_of(data_cfg, 6))
    changed = [synth_codec_key(CodecConfig(channels=16), fingerprint_of(data_cfg, 6)),
               synth_codec_key(CodecConfig(temporal_stride=2), fingerprint_of(data_cfg, 6)),
               synth_codec_key(CodecConfig(spatial_stride=4), fingerprint_of(data_cfg, 6)),
               synth_codec_key(base, fingerprint_of(OmegaConf.merge(data_cfg, {"seed": 1}), 6)),
               synth_codec_key(base, fingerprint_of(data_cfg, 5))]
    assert len({key, *changed}) == 6
    # Runtime-only settings do not refit: normalisation is applied on load, the cache dir is a location.
    assert synth_codec_key(CodecConfig(normalize="global", cache_dir="elsewhere"), fingerprint_of(data_cfg, 6)) == key
    assert synth_codec_key(base, fingerprint_of(OmegaConf.merge(data_cfg, {"root": "other", "num_test": 9}), 6)) == key


def test_corrupt_cache_file_is_named_and_refitted(data_cfg, tmp_path):
    cfg = CodecConfig(cache_dir=str(tmp_path / "codec"), channels=16)
    good = load_or_fit_synth_codec(cfg, frames_of(data_cfg), progress=False)
    path = cache_path(cfg, synth_codec_key(cfg, frames_of(data_cfg, 6)))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CodecError, match=rf"{path.name}: cannot read cached SynthCodec"):
        load_synth_codec(path, cfg)
    with pytest.warns(UserWarning, match=rf"{path.name}: cannot read cached SynthCodec.*refitting"):
        refit = load_or_fit_synth_codec(cfg, frames_of(data_cfg), progress=False)
    assert torch.equal(refit.basis, good.basis)  # the fit is deterministic, signs included
    assert torch.equal(load_synth_codec(path, cfg).basis, good.basis)  # and the file is whole again
    with pytest.raises(CodecError, match=r"tensor 'basis' is \(16, 12, 8, 8\), expected \(8, 12, 8, 8\)"):
        load_synth_codec(path, CodecConfig(channels=8))


def test_config_check_and_builder_name_the_fault(data_cfg):
    problems = dict(CodecConfig(kind="vqgan", temporal_stride=3, channels=0, normalize="none").check())
    assert set(problems) == {"kind", "temporal_stride", "channels", "normalize"}
    assert dict(CodecConfig(channels=3 * 4 * 64 + 1).check())["channels"].startswith("must be in [1, 3 * ")
    assert CodecConfig().check() == [] and CodecConfig(kind="wan", path="/x").check() == []
    with pytest.raises(ValueError, match="codec.path: kind 'wan' needs the local directory"):
        build_codec(CodecConfig(kind="wan"))
    with pytest.raises(ValueError, match="kind 'synth' is fitted on training frames"):
        build_codec(CodecConfig())
    with pytest.raises(ValueError, match=r"clips must be uint8 \(T, H, W, 3\)"):
        fit_synth_codec(CodecConfig(), [np.zeros((5, 3, 64, 64), np.float32)], progress=False)


# ---------------------------------------------------------------------------------------- Wan VAE


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    """A tiny random Wan2.2-layout AutoencoderKLWan (2x2 patchify, residual blocks, 12 channels in/out,
    z_dim 8, 4x16x16 compression) saved with save_pretrained, as the real one ships."""
    from diffusers import AutoencoderKLWan
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=16, decoder_base_dim=24, z_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                           scale_factor_temporal=4, scale_factor_spatial=16,
                           latents_mean=[0.1 * i - 0.3 for i in range(8)],
                           latents_std=[0.5 + 0.25 * i for i in range(8)])
    root = tmp_path_factory.mktemp("wan") / "Wan2.2-TI2V-5B-Diffusers"
    vae.save_pretrained(root / "vae")  # a pipeline root: the codec finds its vae/ subfolder
    return root


def test_wan_codec_frame_rule_and_normalisation_match_the_pipelines(wan_dir):
    codec = build_codec(CodecConfig(kind="wan", path=str(wan_dir)))
    assert (codec.latent_channels, codec.temporal_stride, codec.spatial_stride) == (8, 4, 16)
    assert not any(p.requires_grad for p in codec.parameters())
    gen = torch.Generator().manual_seed(0)
    for T, F in ((1, 1), (5, 2), (9, 3)):
        video = torch.rand(1, 3, T, 32, 32, generator=gen) * 2 - 1
        with torch.no_grad():
            latents = codec.encode(video)
            mode = codec.vae.encode(video).latent_dist.mode()  # pipeline: retrieve_latents(argmax)
        assert latents.shape == (1, 8, F, 2, 2) and codec.num_latent_frames(T) == F
        mean = torch.tensor(codec.vae.config.latents_mean).view(1, 8, 1, 1, 1)
        std = torch.tensor(codec.vae.config.latents_std).view(1, 8, 1, 1, 1)
        torch.testing.assert_close(latents, (mode - mean) / std)
        with torch.no_grad():
            decoded = codec.decode(latents)
            direct = codec.vae.decode(mode).sample  # decode inverts the normalisation exactly
        assert decoded.shape == (1, 3, T, 32, 32) and decoded.abs().max() <= 1
        torch.testing.assert_close(decoded, direct.clamp(-1, 1), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"6 frames; the frame count must be 4n\+1"):
        codec.encode(torch.zeros(1, 3, 6, 32, 32))


def test_wan_codec_is_causal(wan_dir):
    codec = build_codec(CodecConfig(kind="wan", path=str(wan_dir / "vae")))
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    bumped = video.clone()
    bumped[:, :, 5] = 0  # frame 5 belongs to latent 2 (frames 5..8)
    with torch.no_grad():
        delta = (codec.encode(bumped) - codec.encode(video)).abs().amax((0, 1, 3, 4))
    assert delta[:2].max() < 1e-6 and delta[2] > 1e-4


def test_wan_codec_key_is_its_weights_not_its_folder_name(wan_dir, tmp_path):
    """The key guards train.init_from against another latent space: every pipeline's VAE lives in vae/, so
    the same folder name with other weights must give another key, and a copy elsewhere the same one."""
    from diffusers import AutoencoderKLWan
    codec = build_codec(CodecConfig(kind="wan", path=str(wan_dir)))
    vae = AutoencoderKLWan.from_pretrained(wan_dir / "vae")
    vae.save_pretrained(tmp_path / "copy" / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(0.01)  # a fine-tune of the same VAE
    vae.save_pretrained(tmp_path / "tuned" / "vae")
    keys = [build_codec(CodecConfig(kind="wan", path=str(tmp_path / d))).key for d in ("copy", "tuned")]
    assert codec.key.startswith("wan-vae:") and keys[0] == codec.key and keys[1] != codec.key


def test_wan_codec_names_a_missing_directory_or_config(tmp_path):
    with pytest.raises(CodecError, match=rf"{tmp_path / 'nowhere'}: Wan VAE directory not found"):
        build_codec(CodecConfig(kind="wan", path=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match=rf"{tmp_path / 'empty'}: no config.json"):
        build_codec(CodecConfig(kind="wan", path=str(tmp_path / "empty")))
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan"}))
    with pytest.raises(CodecError, match=rf"{tmp_path / 'empty'}: cannot load AutoencoderKLWan .*no file named"):
        build_codec(CodecConfig(kind="wan", path=str(tmp_path / "empty")))  # config without weights


def test_wan_codec_tiles_large_frames_close_to_whole_frame_encoding(wan_dir):
    """codec.tile: diffusers' spatial tiling, for real frames too large to encode at once; close, not equal."""
    whole = build_codec(CodecConfig(kind="wan", path=str(wan_dir)))
    tiled = build_codec(CodecConfig(kind="wan", path=str(wan_dir), tile=64))
    assert tiled.vae.use_tiling and not whole.vae.use_tiling
    video = torch.rand(1, 3, 5, 96, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        a, b = whole.encode(video), tiled.encode(video)
    assert a.shape == b.shape == (1, 8, 2, 6, 8) and not torch.equal(a, b)
    assert (a - b).abs().mean() < 0.5 * a.abs().mean()  # a random VAE blends tiles loosely; a trained one closely
    with pytest.raises(ValueError, match="codec.tile: must be 0"):
        build_codec(CodecConfig(kind="wan", path=str(wan_dir), tile=40))
