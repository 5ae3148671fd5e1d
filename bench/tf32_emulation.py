"""Emulated error of the Triton kernel's matrix-product precisions.

The Triton backend computes its DFTs as matrix products. On NVIDIA GPUs
``tf32`` rounds each operand to TF32 (10-bit mantissa) and ``tf32x3`` adds the
two correction products of a hi/lo split. This script replays the kernel's
exact sequence of products in NumPy with that rounding (float32 accumulation)
and reports the max error against the float64 reference, relative to each
output's value range. It is an arithmetic emulation, not a GPU measurement.

    python -m bench.tf32_emulation [--sizes 32 40 64] [--batch 16] [--out out/bench]
        (writes <out>/tf32_emulation.json)

The twiddle matrices and the TF32 rounding are the kernel's own
(``_build_twiddles``, ``_round_tf32``: ``cvt.rna``, ties away from zero), so a
change there shows here; ``tests/test_tf32_emulation.py`` runs it small.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from fastfreq import reference as ref
from fastfreq.backends.triton_kernel import _build_twiddles, _round_tf32


def to_tf32(a: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 as the kernel does (``cvt.rna.tf32.f32``)."""
    return _round_tf32(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))).numpy()


def matmul(a, b, precision):
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    if precision == "ieee":
        return a @ b
    ah, bh = to_tf32(a), to_tf32(b)
    if precision == "tf32":
        return ah @ bh
    al, bl = to_tf32(a - ah), to_tf32(b - bh)
    return ah @ bh + (ah @ bl + al @ bh)


def kernel_emulation(x, band, alpha, alpha_r, noise, sigma, precision):
    """The kernel's dataflow with the per-frequency math in float64 (its error is
    far below the products')."""
    B, C, H, W = x.shape
    # the twiddles as the kernel holds them: float32, rounded to TF32 once for "tf32"
    tw = _build_twiddles(H, W, "cpu", round_tf32=precision == "tf32")
    ch, sh, cw, sw, icw, isw = (t.numpy() for t in tw)
    HP, WP, WhP = ch.shape[0], cw.shape[0], cw.shape[1]
    Wh = W // 2 + 1
    gain = ref.suppression_gain(band, alpha, H, W, half=True)
    std = ref.noise_std_from_control(sigma, ref.control_matrix(alpha_r, H, W, half=True))
    out = np.empty_like(x)
    for b in range(B):
        for c in range(C):
            xp = np.zeros((HP, WP), np.float32)
            xp[:H, :W] = x[b, c]
            xr, xi = matmul(xp, cw, precision), -matmul(xp, sw, precision)
            yr = matmul(ch, xr, precision) + matmul(sh, xi, precision)
            yi = matmul(ch, xi, precision) - matmul(sh, xr, precision)
            Y = (yr[:H, :Wh] + 1j * yi[:H, :Wh]) * gain[b]
            g = ref.hermitian_rule(noise[b, c], W)
            Y = Y + std[b] * g * ref.direction(Y, ref.dir_eps(x[b, c]))
            zr = np.zeros((HP, WhP), np.float32)
            zi = np.zeros((HP, WhP), np.float32)
            zr[:H, :Wh], zi[:H, :Wh] = Y.real, Y.imag
            ur = matmul(ch, zr, precision) - matmul(sh, zi, precision)
            ui = matmul(ch, zi, precision) + matmul(sh, zr, precision)
            out[b, c] = (matmul(ur, icw, precision) - matmul(ui, isw, precision))[:H, :W]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 40, 64], help="square image sides")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=os.path.join("out", "bench"))
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    results = {}
    for H in a.sizes:
        W, B, C = H, a.batch, 3
        x = rng.random((B, C, H, W))
        band, alpha = np.arange(B) % 3, rng.random(B)
        ar = rng.random((B, 5))
        noise = rng.standard_normal((B, C, H, W // 2 + 1))
        want = ref.spectral_augment(x, band, alpha, ar, noise)
        for precision in ("ieee", "tf32x3", "tf32"):
            got = kernel_emulation(x, band, alpha, ar, noise, 1.0, precision)
            err = float(np.max(np.abs(got - want).max(axis=(2, 3)) / np.ptp(want, axis=(2, 3))))
            results[f"{H}x{W} {precision}"] = err
            print(f"{H}x{W}  {precision:7s} max error / value range = {err:.2e}")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "tf32_emulation.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
