"""Every scan backend against the sequential reference, plus backend selection and the mamba-ssm loader.

Sizes are small on purpose: the sequential reference is a Python loop, and the file must stay fast on a
busy 2-core machine. CUDA-only backends are skipped with the reason where no GPU is present.
"""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import sccosf_ros.scan as scan
from sccosf_ros.scan import mamba_triton
from sccosf_ros.scan.chunked import segsum, ssd_scan_chunked
from sccosf_ros.scan.reference import ssd_scan_sequential

CPU_BACKENDS = [b for b in scan.available_backends("cpu") if b != "sequential"]
HAS_CUDA = torch.cuda.is_available()


def make_inputs(
    b: int = 2,
    length: int = 37,
    h: int = 4,
    p: int = 3,
    g: int = 2,
    n: int = 5,
    *,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    seed: int = 0,
    dt_scale: float = 1.0,
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    x = rnd(b, length, h, p)
    dt = F.softplus(rnd(b, length, h)) * dt_scale
    A = -(torch.rand(h, generator=gen, dtype=torch.float64) * 2 + 0.1)
    B = rnd(b, length, g, n)
    C = rnd(b, length, g, n)
    D = rnd(h)
    return tuple(t.to(device=device, dtype=dtype) for t in (x, dt, A, B, C, D))


SHAPES = [
    # (b, L, h, p, g, n, chunk)
    pytest.param(2, 37, 4, 3, 2, 5, 8, id="tail-not-multiple-groups"),
    pytest.param(1, 1, 2, 2, 1, 3, 8, id="L=1"),
    pytest.param(1, 16, 3, 2, 3, 4, 16, id="L=chunk-g=h"),
    pytest.param(2, 5, 4, 2, 1, 3, 64, id="L<chunk-one-group"),
    pytest.param(1, 50, 6, 4, 2, 8, 7, id="odd-chunk"),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(("b", "length", "h", "p", "g", "n", "chunk"), SHAPES)
def test_forward_matches_sequential_float64(backend, b, length, h, p, g, n, chunk):
    x, dt, A, B, C, D = make_inputs(b, length, h, p, g, n)
    ref = ssd_scan_sequential(x, dt, A, B, C, D)
    out = scan.ssd_scan(x, dt, A, B, C, D, chunk_size=chunk, backend=backend)
    assert out.shape == x.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    no_d = scan.ssd_scan(x, dt, A, B, C, None, chunk_size=chunk, backend=backend)
    torch.testing.assert_close(no_d, ssd_scan_sequential(x, dt, A, B, C, None), rtol=1e-10, atol=1e-10)


def _grads(fn, inputs: tuple[torch.Tensor, ...], cotangent: torch.Tensor) -> tuple[torch.Tensor, ...]:
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    return torch.autograd.grad(out, leaves, cotangent)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("b", "length", "h", "p", "g", "n", "chunk"),
    [SHAPES[0], SHAPES[1], SHAPES[4]],
)
def test_gradients_match_sequential_float64(backend, b, length, h, p, g, n, chunk):
    inputs = make_inputs(b, length, h, p, g, n, seed=1)
    cot = torch.randn(b, length, h, p, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = _grads(ssd_scan_sequential, inputs, cot)
    got = _grads(lambda *t: scan.ssd_scan(*t, chunk_size=chunk, backend=backend), inputs, cot)
    for name, r, o in zip(["x", "dt", "A", "B", "C", "D"], ref, got, strict=True):
        assert torch.isfinite(o).all(), name
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"d{name}: {m}")


def test_chunked_gradcheck_small():
    """Finite differences, independent of the reference's own autograd."""
    inputs = [t.requires_grad_(True) for t in make_inputs(1, 6, 2, 2, 1, 2, seed=3)]
    assert torch.autograd.gradcheck(lambda *t: ssd_scan_chunked(*t, chunk_size=4), inputs)


def test_float32_close_to_float64():
    x, dt, A, B, C, D = make_inputs(1, 300, 4, 8, 2, 16, seed=4)
    ref = ssd_scan_sequential(x, dt, A, B, C, D)
    out = scan.ssd_scan(*(t.float() for t in (x, dt, A, B, C, D)), backend="chunked")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_bfloat16_within_tolerance():
    """bf16 in/out, float32 inside: error is bf16 rounding of the output, not of the cumulative sums."""
    inputs64 = make_inputs(1, 200, 4, 8, 2, 16, seed=5)
    bf = tuple(t.bfloat16() for t in inputs64)
    ref = ssd_scan_sequential(*(t.double() for t in bf))  # same rounded inputs, exact arithmetic
    out = scan.ssd_scan(*bf, backend="chunked")
    assert out.dtype == torch.bfloat16
    err = (out.double() - ref).abs()
    assert (err <= 1e-2 * ref.abs() + 2e-2).all(), float(err.max())
    x, dt, A, B, C, D = (t.detach().clone().requires_grad_(True) for t in bf)
    scan.ssd_scan(x, dt, A, B, C, D, backend="chunked").float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_strong_decay_long_sequence_is_finite_and_exact():
    """Large dt·A sums would overflow exp(cumsum_t - cumsum_s) on masked entries; segsum must not."""
    x, dt, A, B, C, D = make_inputs(1, 600, 2, 2, 1, 4, seed=6, dt_scale=30.0)
    leaves = [t.requires_grad_(True) for t in (x, dt, A, B, C, D)]
    out = ssd_scan_chunked(*leaves, chunk_size=128)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)
    with torch.no_grad():
        torch.testing.assert_close(out, ssd_scan_sequential(x, dt, A, B, C, D), rtol=1e-10, atol=1e-10)


def test_segsum_structure():
    a = torch.tensor([0.0, -1.0, -2.0, -3.0], dtype=torch.float64)
    s = segsum(a)
    assert torch.isneginf(s[0, 1]) and s[2, 2] == 0 and s[3, 1] == -5.0
    assert torch.equal(torch.exp(s).triu(1), torch.zeros(4, 4, dtype=torch.float64))


def test_bad_groups_raise():
    x, dt, A, B, C, D = make_inputs(1, 4, 4, 2, 2, 3)
    with pytest.raises(ValueError, match="divide"):
        ssd_scan_chunked(x[:, :, :3], dt[:, :, :3], A[:3], B, C, D[:3])  # 2 groups, 3 heads


# ---- selection ---------------------------------------------------------------------------------------


def test_cpu_backends_and_default(monkeypatch):
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    monkeypatch.delenv("SCCOSF_SCAN_COMPILE_CPU", raising=False)
    assert scan.available_backends("cpu") == ["sequential", "chunked"]
    x = torch.zeros(1, 2, 1, 1)
    assert scan.resolve_backend("auto", x) == "chunked"
    if not HAS_CUDA:
        assert scan.available_backends("cuda") == ["sequential", "chunked"]
        assert "CUDA" in (scan.backend_unavailable_reason("triton", "cuda") or "")


def test_env_var_forces_backend_and_argument_wins(monkeypatch):
    calls: list[str] = []

    def spy(*args, **kwargs):
        calls.append("sequential")
        return ssd_scan_sequential(*args, **kwargs)

    monkeypatch.setattr(scan, "ssd_scan_sequential", spy)
    monkeypatch.setenv(scan.ENV_VAR, "sequential")
    x, dt, A, B, C, D = make_inputs(1, 5, 2, 2, 1, 3)
    scan.ssd_scan(x, dt, A, B, C, D)
    assert calls == ["sequential"]
    assert scan.resolve_backend("chunked", x) == "chunked"  # explicit argument beats the env var
    scan.ssd_scan(x, dt, A, B, C, D, backend="chunked")
    assert calls == ["sequential"]


def test_forced_backend_beats_the_env_var_not_the_argument(monkeypatch):
    """The ONNX export forces `chunked` whatever SCCOSF_SCAN_BACKEND says; an explicit argument still wins."""
    x = torch.zeros(1, 2, 1, 1)
    monkeypatch.setenv(scan.ENV_VAR, "sequential")
    with scan.forced_backend("chunked"):
        assert scan.resolve_backend("auto", x) == "chunked"
        assert scan.resolve_backend("sequential", x) == "sequential"
        with scan.forced_backend("sequential"):  # nests, and restores on exit
            assert scan.resolve_backend("auto", x) == "sequential"
        assert scan.resolve_backend("auto", x) == "chunked"
    assert scan.resolve_backend("auto", x) == "sequential"
    with pytest.raises(ValueError, match="unknown scan backend"), scan.forced_backend("fast"):
        pass
    if not HAS_CUDA:
        with (
            scan.forced_backend("triton"),
            pytest.raises(scan.ScanBackendUnavailableError, match=r"forced_backend\('triton'"),
        ):
            scan.resolve_backend("auto", x)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error raised where CUDA is absent")
@pytest.mark.parametrize("name", ["triton", "compile"])
def test_forcing_unavailable_backend_raises(monkeypatch, name):
    monkeypatch.delenv("SCCOSF_SCAN_COMPILE_CPU", raising=False)
    x, dt, A, B, C, D = make_inputs(1, 3, 2, 2, 1, 3)
    with pytest.raises(scan.ScanBackendUnavailableError, match=f"'{name}'.*backend="):
        scan.ssd_scan(x, dt, A, B, C, D, backend=name)
    monkeypatch.setenv(scan.ENV_VAR, name)
    with pytest.raises(scan.ScanBackendUnavailableError, match=scan.ENV_VAR):
        scan.ssd_scan(x, dt, A, B, C, D)


def test_unknown_backend_raises(monkeypatch):
    x = torch.zeros(1, 2, 1, 1)
    with pytest.raises(scan.ScanBackendUnavailableError, match="unknown scan backend 'fast'"):
        scan.resolve_backend("fast", x)
    monkeypatch.setenv(scan.ENV_VAR, "Sequential ")
    assert scan.resolve_backend("auto", x) == "sequential"


# ---- mamba-ssm loader -----------------------------------------------------------------------------------


def _fake_mamba(root: Path, *, broken_submodule: bool = False) -> None:
    """A package shaped like the pure-Python mamba-ssm wheel: its __init__ needs a missing CUDA module."""
    pkg = root / "mamba_ssm"
    (pkg / "ops" / "triton").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from mamba_ssm.ops.selective_scan_interface import selective_scan_fn\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "__init__.py").write_text("")
    (pkg / "ops" / "selective_scan_interface.py").write_text("import selective_scan_cuda_fake_missing\n")
    (pkg / "ops" / "triton" / "ssd_bmm.py").write_text("SCALE = 1.0\n")
    body = "import definitely_missing_dependency\n" if broken_submodule else ""
    (pkg / "ops" / "triton" / "ssd_combined.py").write_text(
        body
        + textwrap.dedent(
            """
            from mamba_ssm.ops.triton.ssd_bmm import SCALE

            def mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, dt_softplus=False):
                return ("fake", SCALE, chunk_size, dt_softplus)
            """
        )
    )


@pytest.fixture
def fake_cuda_env(monkeypatch, tmp_path):
    """Pretend CUDA and triton exist so the loader's import logic runs on a CPU machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "triton", types.ModuleType("triton"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SCCOSF_MAMBA_HEADLESS", raising=False)
    for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
        monkeypatch.delitem(sys.modules, name)
    mamba_triton._reset_for_tests()
    yield tmp_path
    mamba_triton._reset_for_tests()


def _mamba_modules() -> set[str]:
    return {m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")}


def test_loader_headless_fallback_when_parent_init_fails(fake_cuda_env, caplog):
    _fake_mamba(fake_cuda_env)
    with caplog.at_level("INFO", logger=mamba_triton.__name__):
        assert mamba_triton.is_available()
    assert mamba_triton.load_mode() == "headless"
    assert "without running that __init__" in caplog.text
    # sys.modules restored: only what the failed normal import itself left behind may remain.
    assert "mamba_ssm" not in sys.modules
    assert not {m for m in _mamba_modules() if m.startswith("mamba_ssm.ops.triton.ssd")}
    with pytest.raises(ImportError):  # the package itself is left exactly as broken as it was
        __import__("mamba_ssm")
    x = torch.zeros(1, 2, 1, 1)
    assert mamba_triton.ssd_scan_triton(x, x[..., 0], x[0, 0, :, 0], x, x) == ("fake", 1.0, 256, False)


def test_loader_headless_can_be_disabled(fake_cuda_env, monkeypatch):
    _fake_mamba(fake_cuda_env)
    monkeypatch.setenv("SCCOSF_MAMBA_HEADLESS", "0")
    assert not mamba_triton.is_available()
    assert "selective_scan_cuda_fake_missing" in mamba_triton.unavailable_reason()


def test_loader_reports_broken_triton_module(fake_cuda_env):
    _fake_mamba(fake_cuda_env, broken_submodule=True)
    assert not mamba_triton.is_available()
    reason = mamba_triton.unavailable_reason()
    assert "definitely_missing_dependency" in reason and "__init__ failed" in reason
    x = torch.zeros(1, 2, 1, 1)
    with pytest.raises(RuntimeError, match="'triton' is unavailable"):
        mamba_triton.ssd_scan_triton(x, x[..., 0], x[0, 0, :, 0], x, x)


def test_loader_without_mamba(fake_cuda_env):
    assert not mamba_triton.is_available()
    assert mamba_triton.unavailable_reason() == "mamba-ssm is not installed"


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-machine answer")
def test_loader_reports_no_cuda():
    mamba_triton._reset_for_tests()
    assert not mamba_triton.is_available()
    assert "CUDA is not available" in mamba_triton.unavailable_reason()


# ---- CUDA backends ---------------------------------------------------------------------------------------

CUDA_BACKENDS = ["chunked", "compile", "triton"]


@pytest.mark.skipif(not HAS_CUDA, reason="CUDA backends need a GPU (none on this machine)")
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_cuda_backend_matches_sequential(backend):
    reason = scan.backend_unavailable_reason(backend, "cuda")
    if reason is not None:
        pytest.skip(reason)
    inputs64 = make_inputs(2, 300, 4, 16, 2, 16, seed=7)
    ref = ssd_scan_sequential(*inputs64)
    inputs = [t.float().cuda().requires_grad_(True) for t in inputs64]
    out = scan.ssd_scan(*inputs, chunk_size=64, backend=backend)
    torch.testing.assert_close(out.double().cpu(), ref, rtol=2e-3, atol=2e-3)
    cot = torch.randn_like(ref)
    ref_g = _grads(ssd_scan_sequential, inputs64, cot)
    got_g = torch.autograd.grad(out, inputs, cot.float().cuda())
    for name, r, o in zip(["x", "dt", "A", "B", "C", "D"], ref_g, got_g, strict=True):
        err = float((o.double().cpu() - r).abs().max() / (r.abs().max() + 1e-6))
        assert err < 5e-3, f"d{name} relative error {err}"
