"""Attention entry point: backends agree (values and gradients), masks and time biases behave."""
import pytest
import torch

from models.attention import BACKENDS, STRUCTURED_BACKENDS, attention, frame_local_bias, phase_window_bias


def _qkv(B=2, H=3, Lq=7, Lk=5, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g, dtype=torch.float64, requires_grad=True)
            for L in (Lq, Lk, Lk)]


def test_backends_match_reference_with_bias_and_padding():
    q, k, v = _qkv()
    bias = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    key_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    ref = attention(q, k, v, bias=bias, key_mask=key_mask, backend="reference")
    grads_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for name in set(BACKENDS) - STRUCTURED_BACKENDS:  # fused kernels take a TimeBias, not a dense bias
        out = attention(q, k, v, bias=bias, key_mask=key_mask, backend=name)
        torch.testing.assert_close(out, ref)
        for g, gr in zip(torch.autograd.grad(out.square().sum(), (q, k, v)), grads_ref):
            torch.testing.assert_close(g, gr)


def test_padded_keys_get_no_weight_and_empty_rows_are_zero():
    q, k, v = _qkv(B=1)
    key_mask = torch.tensor([[True, True, False, False, False]])
    out = attention(q, k, v, key_mask=key_mask, backend="reference")
    v2 = v.detach().clone()
    v2[:, :, 2:] = 1e6  # values behind the mask must not leak
    torch.testing.assert_close(attention(q, k, v2, key_mask=key_mask, backend="reference"), out)
    none = torch.zeros(1, 5, dtype=torch.bool)
    for name in BACKENDS:
        empty = attention(q, k, v, key_mask=none, backend=name)
        assert torch.equal(empty, torch.zeros_like(empty))


def test_unknown_backend_lists_the_registered_ones():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="registered: .*reference.*sdpa"):
        attention(q, k, v, backend="flash9")


def test_phase_window_bias_inside_window_only_and_never_on_base_tokens():
    query_time = torch.tensor([[0.1, 0.5, 0.9]])
    key_window = torch.tensor([[[0.0, 1.0], [0.0, 0.5], [0.5, 1.0]]])  # base token, phase 1, phase 2
    key_is_phase = torch.tensor([[False, True, True]])
    bias = phase_window_bias(query_time, key_window, key_is_phase, torch.tensor([2.0, -1.0]))
    assert bias.shape == (1, 2, 3, 3)
    expected = torch.tensor([[0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.float32)  # end is exclusive
    torch.testing.assert_close(bias[0, 0], 2 * expected)
    torch.testing.assert_close(bias[0, 1], -expected)
    zero = phase_window_bias(query_time, key_window, key_is_phase, torch.zeros(2))
    assert torch.equal(zero, torch.zeros_like(zero))  # zero-init weight = plain attention


def test_frame_local_bias_limits_attention_to_the_radius():
    bias = frame_local_bias(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.5, 1.0, 1.5]]), radius=0.5)
    assert torch.isinf(bias).tolist() == [[[[False, False, True, True], [True, False, False, False]]]]


def test_time_bias_description_matches_the_dense_biases():
    q, k, v = _qkv(B=1, H=2, Lq=3, Lk=3)
    query_time = torch.tensor([[0.1, 0.5, 0.9]])
    key_window = torch.tensor([[[0.0, 1.0], [0.0, 0.5], [0.5, 1.0]]])
    is_phase = torch.tensor([[False, True, True]])
    w = torch.tensor([2.0, -1.0], dtype=torch.float64)
    from models.attention import TimeBias
    text = TimeBias("text", query_time, key_window, is_phase, w)
    dense = phase_window_bias(query_time, key_window, is_phase, w)
    torch.testing.assert_close(attention(q, k, v, time_bias=text, backend="reference"),
                               attention(q, k, v, bias=dense, backend="reference"))
    audio = TimeBias("audio", query_time, torch.tensor([[[0.0, 0.2], [0.4, 0.6], [0.9, 0.9]]]))
    expected = torch.tensor([[0, -1, -1], [-1, 0, -1], [-1, -1, 0]]).float() * float("inf")
    torch.testing.assert_close(audio.materialise()[0, 0], expected.nan_to_num(0.0, neginf=float("-inf")))
    with pytest.raises(ValueError, match="mode"):
        TimeBias("video", query_time, key_window).materialise()


def test_probabilities_of_fully_masked_rows_are_zero_with_finite_gradients():
    # A sample whose image condition is dropped masks every identity token: its rows must be 0 and must not
    # send NaN gradients back (the SyncDreamer localisation loss diverged to NaN from this).
    from models.attention import attention_probs
    q = torch.randn(2, 2, 5, 8, requires_grad=True)
    k = torch.randn(2, 2, 4, 8, requires_grad=True)
    key_mask = torch.tensor([[True] * 4, [False] * 4])
    probs = attention_probs(q, k, key_mask=key_mask)
    assert probs[1].abs().sum() == 0
    torch.testing.assert_close(probs[0].sum(-1), torch.ones(2, 5))
    (probs * torch.randn_like(probs)).sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert q.grad[0].abs().sum() > 0
