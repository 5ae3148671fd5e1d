"""Emulated error of the Triton kernel's matrix-product precisions.

The Triton backend computes its DFTs as matrix products. On NVIDIA GPUs
``tf32`` rounds each operand to TF32 (10-bit mantissa) and ``tf32x3`` adds the
two correction products of a hi/lo split. This script replays the kernel's
exact sequence of products in NumPy with that rounding (float32 accumulation)
and reports the max error against the float64 reference, relative to each
output's value range. It is an arithmetic emulation, not a GPU measurement.

    python -m bench.tf32_emulation     (writes out/bench/tf32_emulation.json)
"""
from __future__ import annotations

import json

import numpy as np
import torch

from fastfreq import reference as ref
from fastfreq.backends.triton_kernel import _twiddles_cpu


def to_tf32(a: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 (round to nearest even on 13 dropped bits)."""
    b = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    lsb = (b >> 13) & 1
    b = (b + 0xFFF + lsb) & ~np.uint64(0x1FFF)
    return b.astype(np.uint32).view(np.float32)


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
    ch, sh, cw, sw, icw, isw = (t.numpy() for t in _twiddles_cpu(H, W, torch.float32))
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


def main():
    rng = np.random.default_rng(0)
    results = {}
    for H, W in [(32, 32), (40, 40), (64, 64)]:
        B, C = 16, 3
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
    return results


if __name__ == "__main__":
    import os

    os.makedirs("out/bench", exist_ok=True)
    with open("out/bench/tf32_emulation.json", "w") as f:
        json.dump(main(), f, indent=1)
    print("wrote out/bench/tf32_emulation.json")
