"""Benchmark of the SSD scan backends (not a test): accuracy and speed against the sequential reference.

CPU part (always): ``chunked`` vs ``sequential`` in float32 at L = 1200, 4800, 19200 tokens (19200 =
120×160, one scan direction over a quarter-resolution 480×640 feature map), d_model 64 and 256
channels, state n = 16, batch 1. Max abs error is against the sequential scan in float64.
CUDA part (only where CUDA exists): ``chunked``, ``compile`` and ``triton`` on the GPU, same sizes.

Times are medians; forward-only runs under ``torch.no_grad`` (as inference does). Prints markdown.

    python benchmarks/bench_scan.py --threads 2 --seq-repeats 1   # after `make venv` (pip install -e .)
    PYTHONPATH=. python benchmarks/bench_scan.py                   # from a checkout without the install
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sccosf_ros.scan import DEFAULT_CHUNK_SIZE, available_backends, ssd_scan, ssd_scan_sequential

Inputs = tuple[torch.Tensor, ...]


def make_inputs(length: int, channels: int, headdim: int, n: int, seed: int = 0) -> Inputs:
    """float64 inputs on CPU with a realistic dt range (softplus of N(0,1) minus a bias)."""
    gen = torch.Generator().manual_seed(seed)
    h = channels // headdim
    x = torch.randn(1, length, h, headdim, generator=gen, dtype=torch.float64)
    dt = F.softplus(torch.randn(1, length, h, generator=gen, dtype=torch.float64) - 2.0)
    A = -torch.exp(torch.rand(h, generator=gen, dtype=torch.float64) * 2.7)  # -1 .. -16 like Mamba init
    B = torch.randn(1, length, 1, n, generator=gen, dtype=torch.float64)
    C = torch.randn(1, length, 1, n, generator=gen, dtype=torch.float64)
    D = torch.ones(h, dtype=torch.float64)
    return x, dt, A, B, C, D


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


STAT: Callable[[list[float]], float] = statistics.median


def time_fn(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Wall time in seconds over ``repeats`` runs: median, or minimum with ``--stat min``.

    The minimum is the better estimate of a kernel's own cost on a shared, oversubscribed machine (other
    processes only ever add time); the median is the default because it is what a user sees.
    """
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return STAT(times)


def fwd(scan: Callable[..., torch.Tensor], inputs: Inputs) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return scan(*inputs)

    return run


def fwd_bwd(scan: Callable[..., torch.Tensor], inputs: Inputs) -> Callable[[], object]:
    def run() -> object:
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        scan(*leaves).sum().backward()
        return leaves[0].grad

    return run


def headdim_for(channels: int, headdim: int) -> int:
    return headdim or (16 if channels <= 64 else 32)


def cpu_table(args: argparse.Namespace) -> list[str]:
    rows = [
        "| L | channels (h×p) | err f32 | err f64 | seq fwd s | chunked fwd s | fwd × "
        "| seq fwd+bwd s | chunked fwd+bwd s | fwd+bwd × |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    chunk = args.chunk_size or DEFAULT_CHUNK_SIZE

    def chunked(*t: torch.Tensor) -> torch.Tensor:
        return ssd_scan(*t, chunk_size=chunk, backend="chunked")

    for channels in args.channels:
        p = headdim_for(channels, args.headdim)
        for length in args.lengths:
            x64 = make_inputs(length, channels, p, args.state)
            x32 = tuple(t.float() for t in x64)
            with torch.no_grad():
                ref = ssd_scan_sequential(*x64)
                err32 = float((chunked(*x32).double() - ref).abs().max())
                err64 = float((chunked(*x64) - ref).abs().max())
            s_f = time_fn(fwd(ssd_scan_sequential, x32), args.seq_repeats)
            c_f = time_fn(fwd(chunked, x32), args.repeats)
            s_b = time_fn(fwd_bwd(ssd_scan_sequential, x32), args.seq_repeats)
            c_b = time_fn(fwd_bwd(chunked, x32), args.repeats)
            rows.append(
                f"| {length} | {channels} ({channels // p}×{p}) | {err32:.1e} | {err64:.1e} | {s_f:.3f} "
                f"| {c_f:.4f} | {s_f / c_f:.0f} | {s_b:.3f} | {c_b:.4f} | {s_b / c_b:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows


def cuda_table(args: argparse.Namespace) -> list[str]:
    backends = [b for b in available_backends("cuda") if b != "sequential"]
    rows = [
        "| L | channels | backend | max abs err vs f64 seq | fwd ms | fwd+bwd ms | first call s |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    for channels in args.channels:
        p = headdim_for(channels, args.headdim)
        for length in args.lengths:
            x64 = make_inputs(length, channels, p, args.state)
            with torch.no_grad():
                ref = ssd_scan_sequential(*x64)
            xs = tuple(t.float().cuda() for t in x64)
            for backend in backends:

                def scan(*t: torch.Tensor, backend: str = backend) -> torch.Tensor:
                    return ssd_scan(*t, chunk_size=args.cuda_chunk_size, backend=backend)

                t0 = time.perf_counter()
                fwd_bwd(scan, xs)()  # compile / autotune / first-call cost, reported separately
                fwd(scan, xs)()
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                with torch.no_grad():
                    err = float((scan(*xs).double().cpu() - ref).abs().max())
                f_ms = 1e3 * time_fn(fwd(scan, xs), args.repeats * 4, "cuda")
                b_ms = 1e3 * time_fn(fwd_bwd(scan, xs), args.repeats * 4, "cuda")
                rows.append(
                    f"| {length} | {channels} | {backend} | {err:.1e} | {f_ms:.2f} | {b_ms:.2f} "
                    f"| {first:.1f} |"
                )
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (dev machines have 2 cores)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1200, 4800, 19200])
    ap.add_argument("--channels", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--headdim", type=int, default=0, help="0: 16 for ≤64 channels, else 32")
    ap.add_argument("--state", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="runs per chunked timing (median)")
    ap.add_argument("--seq-repeats", type=int, default=1, help="runs per sequential timing (it is slow)")
    ap.add_argument("--chunk-size", type=int, default=0, help=f"CPU chunk (0: {DEFAULT_CHUNK_SIZE})")
    ap.add_argument("--cuda-chunk-size", type=int, default=128)
    ap.add_argument("--stat", choices=["median", "min"], default="median", help="timing statistic")
    ap.add_argument("--skip-cpu", action="store_true", help="only the CUDA table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global STAT
    STAT = min if args.stat == "min" else statistics.median
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA: {torch.cuda.is_available()}, "
        f"{args.stat} of {args.repeats} (chunked) / {args.seq_repeats} (sequential) runs"
    )
    if not args.skip_cpu:
        print("\n## CPU, float32, batch 1, n=16: chunked vs sequential\n")
        cpu_table(args)
    if torch.cuda.is_available():
        print(f"\n## CUDA ({torch.cuda.get_device_name()}), float32, batch 1, n=16\n")
        cuda_table(args)
    else:
        print("\n(no CUDA: GPU table skipped)")


if __name__ == "__main__":
    main()
