"""FLOP counting and timing helpers shared by ``sccosf-model-info`` and ``benchmarks/bench_model.py``.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add; only matmul,
convolution and attention kernels are counted, element-wise ops are not). Two gaps are handled here:

* CPU ``scaled_dot_product_attention`` dispatches to ``_scaled_dot_product_flash_attention_for_cpu``, which
  the counter does not know (it reports 0): a formula is registered for it.
* The SSD scan is einsums, which the counter sees as the batched matmuls they lower to; the decay masks,
  exponentials and cumulative sums are element-wise and uncounted. :func:`scan_flop_report` compares the
  counted FLOPs with the analytic cost of the sequential recurrence so the reader can judge.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from sccosf_ros.model.sccosf import SCCoSF
from sccosf_ros.model.ss2d import SS2D
from sccosf_ros.scan import ssd_scan

__all__ = ["count_flops", "module_times", "scan_flop_report", "time_forward"]


def _sdpa_cpu_flops(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """QKᵀ and PV batched matmuls: 2·b·h·(Lq·Lk·d + Lq·Lk·dv)."""
    b, h, lq, d = q
    lk, dv = k[-2], v[-1]
    return 2 * b * h * lq * lk * (d + dv)


_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def _inputs(h: int, w: int, batch: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, h, w, generator=g), torch.rand(batch, 1, h, w, generator=g)


def count_flops(model: SCCoSF, h: int = 480, w: int = 640, depth: int = 1) -> tuple[int, dict[str, int]]:
    """Total forward FLOPs at (h, w), batch 1, and FLOPs per submodule ``depth`` levels down.

    Containers that are never called themselves (ModuleLists) are summed from their outermost called
    descendants, so nothing is counted twice.
    """
    rgb, th = _inputs(h, w)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        model(rgb, th)
    counts = {
        k.removeprefix("SCCoSF."): sum(v.values())
        for k, v in counter.get_flop_counts().items()
        if k.startswith("SCCoSF.")
    }
    outermost = [k for k in counts if not any(k.startswith(o + ".") for o in counts if o != k)]
    parts: dict[str, int] = {}
    for name in outermost:
        key = ".".join(name.split(".")[:depth])
        parts[key] = parts.get(key, 0) + counts[name]
    return counter.get_total_flops(), parts


def scan_flop_report(model: SCCoSF, h: int = 480, w: int = 640) -> list[dict[str, Any]]:
    """For every SS2D call at (h, w): tokens, FLOPs the counter sees inside ``ssd_scan``, analytic minimum.

    The analytic figure is the sequential recurrence, 6 FLOPs per (token, head, channel, state):
    dt·x·B (2), decay·h + input (2), Cᵀh (2). The chunked form does more arithmetic than that (dense Q×Q
    blocks) but in large matmuls.
    """
    calls: list[tuple[SS2D, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, a: calls.append((mod, tuple(a[0].shape))))
        for m in model.modules()
        if isinstance(m, SS2D)
    ]
    try:
        with torch.no_grad():
            model(*_inputs(h, w))
    finally:
        for hook in hooks:
            hook.remove()
    report = []
    for mod, (b, hh, ww, _) in calls:
        length, heads = hh * ww, 4 * mod.nheads
        x = torch.randn(b, length, heads, mod.headdim)
        dt = torch.rand(b, length, heads) * 0.1
        bc = torch.randn(b, length, 4, mod.d_state)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            ssd_scan(x, dt, -torch.ones(heads), bc, bc, torch.ones(heads))
        report.append(
            {
                "grid": (hh, ww),
                "tokens": length,
                "heads": heads,
                "headdim": mod.headdim,
                "state": mod.d_state,
                "counted": counter.get_total_flops(),
                "recurrence": 6 * b * length * heads * mod.headdim * mod.d_state,
            }
        )
    return report


def time_forward(
    model: nn.Module, h: int = 480, w: int = 640, runs: int = 10, warmup: int = 2, batch: int = 1
) -> list[float]:
    """Wall-clock seconds of ``runs`` no-grad forwards after ``warmup`` (current thread setting)."""
    rgb, th = _inputs(h, w, batch)
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            model(rgb, th)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def module_times(
    model: SCCoSF,
    h: int = 480,
    w: int = 640,
    runs: int = 5,
    depth_filter: Callable[[str], bool] | None = None,
) -> dict[str, float]:
    """Median seconds per forward spent in each named submodule (forward hooks; children overlap parents)."""
    depth_filter = depth_filter or (lambda name: name.count(".") <= 1)
    starts: dict[str, float] = {}
    totals: dict[str, list[float]] = {}
    current: dict[str, float] = {}
    hooks = []
    for name, mod in model.named_modules():
        if not name or not depth_filter(name):
            continue

        def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
            starts[name] = time.perf_counter()

        def post(_m: nn.Module, _a: Any, _o: Any, name: str = name) -> None:
            current[name] = current.get(name, 0.0) + time.perf_counter() - starts[name]

        hooks += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    rgb, th = _inputs(h, w)
    try:
        with torch.no_grad():
            model(rgb, th)
            for _ in range(runs):
                current.clear()
                t0 = time.perf_counter()
                model(rgb, th)
                current["(total)"] = time.perf_counter() - t0
                for k, v in current.items():
                    totals.setdefault(k, []).append(v)
    finally:
        for hook in hooks:
            hook.remove()
    return {k: statistics.median(v) for k, v in totals.items()}
