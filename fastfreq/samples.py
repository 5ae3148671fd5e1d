"""A small built-in batch of RGB images, made procedurally (no download).

Each image mixes structure at low, medium and high spatial frequencies (a
smooth colour gradient, a disk, a grating and a checker pattern), so every
power-suppression band and NFD band has something to act on.
"""
from __future__ import annotations

import math

import torch


def sample_batch(n: int = 8, size: int = 40, seed: int = 0) -> torch.Tensor:
    """``(n, 3, size, size)`` float32 images in [0, 1], deterministic for a seed."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size: expected an int >= 2, got {size!r}")
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    imgs = []
    for _ in range(n):
        r = torch.rand(12, generator=g)
        colour = r[:3, None, None]
        gradient = colour * (0.3 + 0.4 * (x * r[3] + y * (1 - r[3])))
        cy, cx, rad = 0.25 + 0.5 * r[4], 0.25 + 0.5 * r[5], 0.1 + 0.2 * r[6]
        disk = (((y - cy) ** 2 + (x - cx) ** 2) < rad ** 2).float()
        freq = 3 + 9 * r[7]
        theta = math.pi * float(r[8])
        grating = torch.cos(2 * math.pi * freq * (x * math.cos(theta) + y * math.sin(theta)))
        checker = ((torch.arange(size)[:, None] // 2 + torch.arange(size)[None, :] // 2) % 2).float()
        img = gradient + 0.25 * disk * r[9:12, None, None] + 0.08 * grating + 0.05 * (checker - 0.5)
        imgs.append(img.clamp(0, 1))
    return torch.stack(imgs)
