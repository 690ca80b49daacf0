"""Flow-matching objective and sampler: recovers a known Gaussian, CFG formula, frame-0 handling."""
import pytest
import torch

from models.contracts import Conditions
from models.flow_matching import FlowMatchingConfig, drop_modalities, flow_matching_loss, shift_timesteps
from models.sampling import guided_velocity, sample

MU, SIGMA = 1.5, 0.5


def _no_cond(batch: int) -> Conditions:
    """Conditions the analytic velocities below ignore (only `text` is required)."""
    return Conditions(text=torch.zeros(batch, 1, 1))


def gaussian_velocity(x, t_frames, cond):
    """Exact E[x1 - x0 | x_t] for x0 ~ N(MU, SIGMA^2), x1 ~ N(0, 1) on the path (1 - t) x0 + t x1."""
    t = t_frames[:, None, :, None, None]
    var = (1 - t) ** 2 * SIGMA**2 + t**2
    return -MU + (t - (1 - t) * SIGMA**2) / var * (x - (1 - t) * MU)


def _moments(solver, steps, shift=3.0):
    noise = torch.randn(4000, 1, 2, 1, 1, generator=torch.Generator().manual_seed(0))
    x = sample(gaussian_velocity, noise, _no_cond(4000), steps=steps, solver=solver, shift=shift)
    return x.mean().item(), x.std().item()


@pytest.mark.parametrize("solver,steps", [("euler", 40), ("heun", 10)])
def test_sampler_recovers_the_data_gaussian(solver, steps):
    mean, std = _moments(solver, steps)
    assert mean == pytest.approx(MU, abs=0.05) and std == pytest.approx(SIGMA, abs=0.05)


def test_heun_is_more_accurate_than_euler_at_equal_steps():
    err = lambda m: abs(m[0] - MU) + abs(m[1] - SIGMA)
    assert err(_moments("heun", 6)) < err(_moments("euler", 6))


def test_shift_keeps_endpoints_and_moves_mass_to_noise():
    t = torch.linspace(0, 1, 11)
    s = shift_timesteps(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and (s[1:-1] > t[1:-1]).all() and (s.diff() > 0).all()


def test_loss_prefers_true_velocity_and_ignores_clean_first_frame():
    g = torch.Generator().manual_seed(1)
    x0 = MU + SIGMA * torch.randn(64, 2, 3, 2, 2, generator=g)
    cfg = FlowMatchingConfig()
    t, noise = torch.rand(64, generator=g), torch.randn(x0.shape, generator=g)
    true = flow_matching_loss(gaussian_velocity, x0, _no_cond(64), cfg, t=t, noise=noise)["loss"]
    zero = flow_matching_loss(lambda x, tf, c: torch.zeros_like(x), x0, _no_cond(64), cfg, t=t, noise=noise)["loss"]
    assert true < 0.5 * zero

    def wrong_on_frame0(x, tf, c):
        v = gaussian_velocity(x, tf, c)
        v[:, :, 0] += 100.0
        return v
    spoiled = flow_matching_loss(wrong_on_frame0, x0, _no_cond(64), cfg, t=t, noise=noise)["loss"]
    assert spoiled == pytest.approx(true.item())  # frame 0 is the given reference, not a target
    seen = {}
    flow_matching_loss(lambda x, tf, c: seen.setdefault("x", x) * 0, x0, _no_cond(64), cfg, t=t, noise=noise)
    assert torch.equal(seen["x"][:, :, 0], x0[:, :, 0])  # and it enters the network clean


def test_modality_dropout_rates():
    cond = drop_modalities(Conditions(text=torch.zeros(20000, 1, 1)), FlowMatchingConfig(),
                           torch.Generator().manual_seed(0))
    for name in ("text", "audio", "image"):
        assert (~getattr(cond, f"keep_{name}")).float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_dual_cfg_combines_three_passes():
    calls = []

    def model(x, tf, cond):  # velocity = 1 + 2*text + 4*audio, so each pass is identifiable
        calls.append(1)
        return x * 0 + 1 + 2 * cond.keep_text.float().view(-1, 1) + 4 * cond.keep_audio.float().view(-1, 1)
    x, tf = torch.zeros(3, 1), torch.zeros(3, 1)
    assert torch.allclose(guided_velocity(model, x, tf, _no_cond(3), 1.0, 1.0), torch.full((3, 1), 7.0))
    assert len(calls) == 1
    # v_none + s_t (v_text - v_none) + s_a (v_full - v_text) = 1 + 5*2 + 3*4
    assert torch.allclose(guided_velocity(model, x, tf, _no_cond(3), 5.0, 3.0), torch.full((3, 1), 23.0))


def test_sampler_keeps_the_reference_frame():
    noise = torch.randn(2, 1, 3, 1, 1)
    ref = torch.full((2, 1, 1, 1, 1), 9.0)
    out = sample(gaussian_velocity, noise, _no_cond(2), steps=4, first_frame=ref)
    assert torch.equal(out[:, :, :1], ref)


def test_motion_prediction_starts_at_the_copy_and_x0_prediction_of_the_truth_is_exact():
    """prediction=motion: a zero network copies the reference into every frame (sampling and loss);
    prediction=x0: a network that outputs the clean latents has zero loss and samples them exactly."""
    from models.flow_matching import as_velocity

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 2, 2, generator=g)
    cond = Conditions(text=torch.zeros(2, 1, 4))
    zero = lambda x, t, c: torch.zeros_like(x)
    copy_cfg = FlowMatchingConfig(prediction="motion")
    out = flow_matching_loss(zero, x0, cond, copy_cfg, t=torch.tensor([0.5, 0.9]))
    # the x0-space loss of the copy: |ref - x0|^2 over the noised frames, whatever t is
    torch.testing.assert_close(out["loss"], (x0[:, :, 1:] - x0[:, :, :1]).square().mean())
    assert out["mse"] > out["loss"]  # the logged velocity MSE is the 1/t^2-weighted one
    noise = torch.randn(x0.shape, generator=g)
    got = sample(as_velocity(zero, "motion"), noise, cond, steps=8, first_frame=x0[:, :, :1])
    torch.testing.assert_close(got, x0[:, :, :1].expand_as(x0))
    oracle = lambda x, t, c: x0
    assert flow_matching_loss(oracle, x0, cond, FlowMatchingConfig(prediction="x0"))["loss"] < 1e-10
    got = sample(as_velocity(oracle, "x0"), noise, cond, steps=5, first_frame=x0[:, :, :1])
    torch.testing.assert_close(got, x0, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown prediction"):
        as_velocity(zero, "eps")
