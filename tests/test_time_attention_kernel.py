"""The fused time-structured attention kernel (kernels/) against its pure-torch reference, forward and
backward, on CPU through the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1 without CUDA).

Tolerance rule (issue 5): the kernel's error against an fp64 reference is at most twice what plain torch
maths in the same dtype loses against it, plus a small atol. Small tiles (32 x 16) make every case cross
several query and key tiles, with ragged last tiles (Lq = 77, Lk = 45)."""
import os

import pytest
import torch

pytest.importorskip("triton")
from kernels import time_attention_triton as impl
from kernels.time_attention import kernel_available, reference_time_attention, time_structured_attention
from models.attention import TimeBias, attention

pytestmark = pytest.mark.usefixtures("one_torch_thread")
if not torch.cuda.is_available() and not impl.INTERPRET:
    pytest.skip("no CUDA and TRITON_INTERPRET was not set before triton kernels were imported",
                allow_module_level=True)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
TILES = (32, 16)


def _case(mode, B=2, H=2, Lq=77, Lk=45, D=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, generator=g) for L in (Lq, Lk, Lk))
    key_mask = torch.ones(B, Lk, dtype=torch.bool)
    if B > 1:
        key_mask[-1, 30:] = False                                     # padded text of the last sample
    query_time = torch.rand(B, Lq, generator=g)
    start = torch.rand(B, Lk, generator=g) * 0.8
    if mode == "audio":                                               # point windows = owning frame's time
        frame = torch.randint(0, 8, (B, Lk), generator=g) / 7.0
        window = torch.stack([frame, frame], -1)
        query_time = (torch.arange(Lq) * 8 // Lq / 7.0).expand(B, Lq).clone()
    else:
        window = torch.stack([start, start + 0.3], -1)
    is_phase = torch.rand(B, Lk, generator=g) > 0.3
    weight = torch.randn(H, generator=g) * 2
    return dict(q=q, k=k, v=v, key_mask=key_mask, mode=mode, query_time=query_time, window=window,
                is_phase=is_phase, weight=weight)


def _run(case, dtype, compute=None, use_kernel=None, blocks=TILES):
    """(out, grads dict) for one case: the kernel (compute None) or the reference in `compute` dtype."""
    leaves = {n: case[n].to(DEVICE, dtype).requires_grad_() for n in ("q", "k", "v")}
    w = case["weight"].to(DEVICE, torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_()
    tb = None
    if case["mode"] is not None:
        tb = TimeBias(case["mode"], case["query_time"].to(DEVICE, w.dtype), case["window"].to(DEVICE, w.dtype),
                      case["is_phase"].to(DEVICE), w if case["mode"] == "text" else None)
    mask = case["key_mask"].to(DEVICE)
    if compute is None:
        out = time_structured_attention(*leaves.values(), tb, mask, use_kernel=use_kernel, blocks=blocks)
    else:
        out = reference_time_attention(*leaves.values(), tb, mask, compute_dtype=compute)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(DEVICE, dtype)
    out.backward(grad_out)
    grads = {n: x.grad for n, x in leaves.items()}
    if case["mode"] == "text":
        grads["w"] = w.grad
    return out.detach(), grads


def _err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _check_against_reference(case, dtype, blocks=TILES):
    truth_out, truth = _run(case, torch.float64, compute=torch.float64)
    torch_out, torch_g = _run(case, dtype, compute=dtype)
    out, grads = _run(case, dtype, use_kernel=True, blocks=blocks)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values())
    pairs = [("out", out, torch_out, truth_out)] + [(n, grads[n], torch_g[n], truth[n]) for n in truth]
    for name, got, same_dtype, exact in pairs:
        limit = 2 * _err(same_dtype, exact) + ATOL[dtype] * max(1.0, exact.abs().max().item())
        assert _err(got, exact) <= limit, f"{name} {dtype}: kernel error {_err(got, exact):.3g} > {limit:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("mode", [None, "text", "audio"])
def test_forward_and_backward_match_the_reference(mode, dtype):
    _check_against_reference(_case(mode), dtype)


@pytest.mark.parametrize("mode", ["text", "audio"])
def test_head_dim_128_and_split_query_loop(mode):
    """head_dim 128, and the dK/dV kernel's query loop split over 3 programs (partials summed)."""
    _check_against_reference(_case(mode, H=3, Lq=70, Lk=33, D=128, seed=1), torch.float32, blocks=(16, 16, 3))


def test_text_window_edges_are_half_open_and_base_tokens_never_biased():
    """One phase key with window [0.25, 0.5), one base key with the same window: a huge w_h sends all mass
    to the phase key exactly for 0.25 <= t < 0.5 and to neither key alone elsewhere."""
    q = torch.zeros(1, 1, 5, 16)                                      # equal logits: only the bias differs
    k = torch.zeros(1, 1, 2, 16)
    v = torch.tensor([[1.0], [0.0]]).expand(2, 16)[None, None].contiguous()  # output = mass on key 0
    times = torch.tensor([[0.2499, 0.25, 0.4999, 0.5, 0.75]])
    window = torch.tensor([[[0.25, 0.5], [0.25, 0.5]]])
    tb = TimeBias("text", times, window, torch.tensor([[True, False]]), torch.tensor([40.0]))
    out = time_structured_attention(q, k, v, tb, use_kernel=True)[0, 0, :, 0]
    torch.testing.assert_close(out, torch.tensor([0.5, 1.0, 1.0, 0.5, 0.5]))
    torch.testing.assert_close(out, reference_time_attention(q, k, v, tb)[0, 0, :, 0])


def test_audio_window_is_closed_and_rows_without_keys_are_zero_with_zero_gradients():
    """Audio keys at t = 0.5 only: queries at 0.5 ± 1e-6 see them, ones at 0.5 ± 1e-5 see nothing and
    must give 0 and zero gradients (not NaN); a sample whose keys are all padding likewise."""
    q = torch.randn(2, 2, 5, 32, requires_grad=True)
    k = torch.randn(2, 2, 20, 32, requires_grad=True)
    v = torch.randn(2, 2, 20, 32, requires_grad=True)
    times = torch.tensor([[0.5 - 1e-5, 0.5 - 1e-6, 0.5, 0.5 + 1e-6, 0.5 + 1e-5]]).expand(2, 5)
    window = torch.full((2, 20, 2), 0.5)
    mask = torch.tensor([[True] * 20, [False] * 20])
    out = time_structured_attention(q, k, v, TimeBias("audio", times, window), mask, use_kernel=True,
                                    blocks=(16, 16))
    (out * torch.randn_like(out)).sum().backward()
    ref = reference_time_attention(q, k, v, TimeBias("audio", times, window), mask)
    torch.testing.assert_close(out, ref)
    assert (out[0, :, 1:4].abs().sum(-1) > 0).all()
    assert (out[0, :, [0, 4]] == 0).all() and (out[1] == 0).all()
    assert (q.grad[0, :, [0, 4]] == 0).all() and (q.grad[1] == 0).all() and (k.grad[1] == 0).all()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_padded_keys_are_ignored_whatever_they_hold():
    """Keys behind the padding mask, filled with huge values, change nothing and get zero gradients."""
    case = _case("text", B=1, Lk=40)
    q, k, v = case["q"], case["k"], case["v"]
    tb = TimeBias("text", case["query_time"], case["window"], case["is_phase"], case["weight"])
    short = TimeBias("text", case["query_time"], case["window"][:, :29], case["is_phase"][:, :29], case["weight"])
    k_pad, v_pad = k.clone().requires_grad_(), v.clone().requires_grad_()
    with torch.no_grad():
        k_pad[:, :, 29:] = 1e4
        v_pad[:, :, 29:] = -1e4
    mask = torch.arange(40)[None] < 29
    out = time_structured_attention(q, k_pad, v_pad, tb, mask, use_kernel=True, blocks=TILES)
    out.sum().backward()
    torch.testing.assert_close(out, time_structured_attention(q, k[:, :, :29], v[:, :, :29], short,
                                                              use_kernel=True, blocks=TILES))
    assert (k_pad.grad[:, :, 29:] == 0).all() and (v_pad.grad[:, :, 29:] == 0).all()


def test_saved_state_grows_with_lq_plus_lk_not_lq_times_lk():
    """What the autograd node keeps for backward: inputs, output and one fp32 value per query row, never
    anything with Lq x Lk elements (that is the point of the kernel)."""
    case = _case("text", B=1, H=2, Lq=96, Lk=40, D=16)
    q = case["q"].requires_grad_()
    tb = TimeBias("text", case["query_time"], case["window"], case["is_phase"], case["weight"].requires_grad_())
    out = time_structured_attention(q, case["k"], case["v"], tb, case["key_mask"][:1], use_kernel=True)
    saved = out.grad_fn.saved_tensors
    biggest_extra = max(x.numel() for x in saved if x.data_ptr() not in {q.data_ptr(), case["k"].data_ptr(),
                                                                            case["v"].data_ptr(), out.data_ptr()})
    assert biggest_extra == 2 * 96                                    # the LSE (B, H, Lq)
    assert all(96 * 40 not in (x.shape[-2:].numel(), x.numel()) for x in saved)


def test_entry_point_falls_back_to_the_reference_and_refuses_impossible_requests(monkeypatch):
    case = _case("audio", B=1)
    tb = TimeBias("audio", case["query_time"], case["window"])
    ref = reference_time_attention(case["q"], case["k"], case["v"], tb)
    torch.testing.assert_close(time_structured_attention(case["q"], case["k"], case["v"], tb, use_kernel=False),
                               ref, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="Triton kernel unavailable"):
        time_structured_attention(case["q"].double(), case["k"].double(), case["v"].double(), tb, use_kernel=True)
    monkeypatch.setenv("ACTSYNC_TRITON", "0")
    assert not kernel_available(case["q"])
    torch.testing.assert_close(attention(case["q"], case["k"], case["v"], backend="triton", time_bias=tb),
                               ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no dense"):
        attention(case["q"], case["k"], case["v"], bias=torch.zeros(1, 1, 77, 45), backend="triton")


def test_dit_with_the_triton_backend_matches_sdpa_outputs_and_parameter_gradients():
    """The whole model (PACA window bias, frame-local audio, visual adapter, self-attention) through the
    'triton' backend equals 'sdpa': the kernel is a drop-in behind the one attention entry point."""
    from models.dit import WanDiT
    from tests.test_dit import _inputs, _randomise
    from tests.test_model_assembly import AUDIO, VISUAL, _cond, _config

    model = WanDiT(_config(phase_embedding=True, phase_window_bias=True), AUDIO, VISUAL)
    _randomise(model, seed=3)
    x, t, text = _inputs()
    cond = _cond(text)
    results = {}
    for backend in ("sdpa", "triton"):
        model.cfg.attention_backend = backend
        model.zero_grad()
        out = model(x, t, cond)
        out.square().mean().backward()
        results[backend] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(results["triton"][0], results["sdpa"][0], rtol=1e-4, atol=1e-5)
    for name, grad in results["sdpa"][1].items():
        torch.testing.assert_close(results["triton"][1][name], grad, rtol=1e-3, atol=1e-5, msg=name)
    assert results["sdpa"][1]["blocks.0.cross_attn.window_bias"].abs().sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("mode", ["text", "audio"])
def test_gpu_compiled_kernel_matches_the_reference(mode, dtype, head_dim):
    """The compiled kernel (default or tuned tile sizes, automatic dK/dV split) at a mid-size shape."""
    _check_against_reference(_case(mode, B=1, H=4, Lq=2000, Lk=300, D=head_dim), dtype, blocks=None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("split", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gpu_split_dkdv_path_matches_the_reference(dtype, split):
    """dK/dV summed from fp32 partials over a forced Lq split (3: ragged last part) vs no split."""
    _check_against_reference(_case("text", B=2, H=2, Lq=1500, Lk=200, D=128), dtype,
                             blocks=impl.Tiles(64, 64, 8, 2, split=split))


def test_interpreter_flag_was_set_before_import_when_no_gpu():
    assert torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def test_model_config_names_an_unknown_attention_backend():
    from models.dit_config import DiTConfig
    problems = dict(DiTConfig(attention_backend="flash").check())
    assert "flash" in problems["attention_backend"] and "triton" in problems["attention_backend"]
    assert "attention_backend" not in dict(DiTConfig(attention_backend="triton").check())


def test_benchmark_script_runs_and_reports_both_targets(tmp_path):
    """bench/bench_time_attention.py --smoke (tiny shapes; interpreter times mean nothing): keeps the GPU
    benchmark from rotting between the sessions that have a GPU."""
    from bench.bench_time_attention import main
    result = main(["--smoke", "--out", str(tmp_path / "r.json")])
    assert {r["method"] for r in result["rows"]} == {"fused", "sdpa+bias", "sdpa"}
    assert set(result["ratios"]) == {"text", "audio"} and (tmp_path / "r.md").read_text().count("target") == 4


def test_tile_configuration_precedence_and_tuned_file(tmp_path, monkeypatch):
    """A caller's Tiles or tuple wins; the tuned file (written by `bench/gpu_suite.py --adopt`) is read per
    GPU family and head-dim bucket; a missing or broken file means the built-in defaults."""
    q = torch.zeros(1, 1, 4, 128)
    assert impl._tiles(q, impl.Tiles(32, 16, 2, 3, 5), "bwd") == impl.Tiles(32, 16, 2, 3, 5)
    assert impl._tiles(q, (16, 16, 3), "bwd") == impl.Tiles(16, 16, split=3)
    tuned = tmp_path / "tuned_tiles.json"
    tuned.write_text('{"sm90": {"d128": {"fwd": [128, 32, 8, 3], "bwd": [64, 32, 4, 2, null]}}}')
    monkeypatch.setattr(impl, "TUNED_TILES_FILE", tuned)
    impl._tuned.cache_clear()
    try:
        assert impl._tuned("sm90", "d128", "fwd") == impl.Tiles(128, 32, 8, 3)
        assert impl._tuned("sm90", "d128", "bwd") == impl.Tiles(64, 32, 4, 2, None)
        assert impl._tuned("sm80", "d128", "fwd") is None and impl._tuned("sm90", "d64", "fwd") is None
        tuned.write_text("{not json")
        impl._tuned.cache_clear()
        assert impl._tuned("sm90", "d128", "fwd") is None
    finally:
        impl._tuned.cache_clear()
