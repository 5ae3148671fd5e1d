"""Every CUDA kernel of fastfreq._C once, on small batches: the workload that
``compute-sanitizer`` runs in ``bench/gpu_check.py`` (memcheck and racecheck).

    compute-sanitizer --tool racecheck python3 -m bench.sanitize

Covers: the cuFFT-path bin kernel (PS, NFD with in-kernel noise and with
explicit noise, both), the single-pass kernel at every side class it
specialises (8, 12, 16, 32, 40, 64 px; odd sides; 1 to 5 channels so that a
block holds several images and a partial last block), the Philox normal
kernel, the parameter-draw kernel, the ops reading the drawn rows at every
side class (the single-pass kernel; the cuFFT path's bin kernel and its
identity restore) and the sampled composite op. Prints one
line per case and exits 1 if a result is not finite (the sanitizer reports
its own errors and sets its own exit code).
"""
from __future__ import annotations

import sys

import torch


def cases():
    from fastfreq.constants import PAPER_BANDS

    bands = PAPER_BANDS
    edges = [float(v) for pair in bands for v in pair]
    for side in (8, 12, 15, 16, 32, 40, 64):
        for C in (1, 3, 5):
            B = 3
            x = torch.rand(B, C, side, side, device="cuda")
            band = torch.tensor([0, 1, 2], device="cuda")
            alpha = torch.rand(B, device="cuda")
            alpha_r = torch.rand(B, len(bands), device="cuda")
            seed = torch.tensor([7], device="cuda")
            noise = torch.randn(B, C, side, side // 2 + 1, device="cuda")
            for op in ("spectral_augment", "spectral_augment_fused"):
                f = getattr(torch.ops.fastfreq, op)
                yield f"{op} {B}x{C}x{side}x{side} ps", lambda: f(x, band, alpha, None, None, None,
                                                                   edges, 1.0, side / 40)
                yield f"{op} {B}x{C}x{side}x{side} nfd", lambda: f(x, None, None, alpha_r, None, seed,
                                                                    edges, 1.0, 1.0)
                yield f"{op} {B}x{C}x{side}x{side} both+noise", lambda: f(x, band, alpha, alpha_r, noise,
                                                                           None, edges, 1.0, 1.0)
            # the ops reading draw_params rows (undrawn images copied): the
            # single-pass kernel, and the cuFFT path's bin kernel + restore
            rows = torch.ops.fastfreq.draw_params(seed, B, 0.5, [0, 1, 2], 0.0, 1.0, 0.5, len(bands),
                                                  False)
            for op in ("spectral_augment_fused_rows", "spectral_augment_rows"):
                f = getattr(torch.ops.fastfreq, op)
                yield f"{op} {B}x{C}x{side}x{side}", lambda: f(x, rows, seed, True, True, edges, 1.0,
                                                               side / 40)
    seed = torch.tensor([3], device="cuda")
    yield "philox_normal", lambda: torch.ops.fastfreq.philox_normal(seed, [5, 3, 40, 21])
    yield "draw_params", lambda: torch.ops.fastfreq.draw_params(seed, 1000, 0.5, [0, 1, 2], 0.0, 1.0,
                                                                 0.5, 5, False)
    x = torch.rand(64, 3, 40, 40, device="cuda")
    for single in (False, True):
        yield f"spectral_augment_sampled single_pass={single}", lambda: torch.ops.fastfreq.spectral_augment_sampled(
            x, seed, 1 / 3, [0, 1, 2], 0.0, 1.0, 0.5, edges, 1.0, 1.0, False, single)[0]


def main() -> int:
    if not torch.cuda.is_available():
        print("error: bench.sanitize runs the CUDA kernels: no CUDA GPU on this machine", file=sys.stderr)
        return 2
    from fastfreq.backends import ext

    ext.require("cuda")
    bad = 0
    for name, fn in cases():
        out = fn()
        torch.cuda.synchronize()
        ok = bool(torch.isfinite(out).all())
        bad += not ok
        print(f"{'ok ' if ok else 'NAN'} {name}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
