"""Figures like the paper's Fig. 3 (power suppression grid) and Fig. 4 (NFD)."""
from __future__ import annotations

import os

import numpy as np
import torch

from . import functional as FF
from .constants import PAPER_BANDS


def _to_hwc(img: torch.Tensor) -> np.ndarray:
    return img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def subplots(rows: int, cols: int, figsize, **kw):
    """``(figure, axes)`` without pyplot: no GUI backend is chosen or switched
    (a notebook user's matplotlib backend is left alone)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **kw)


def save(fig, path: str, dpi: int = 110) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def power_suppression_grid(image: torch.Tensor, path: str, alphas=(0.0, 0.25, 0.5, 0.75, 1.0),
                           radius_scale: float = 1.0, backend: str = "auto") -> str:
    """Fig. 3: rows M_L, M_M, M_H; columns suppression ratio alpha. Writes a PNG."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image: expected a (C, H, W) tensor, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    n = len(alphas)
    batch = image.unsqueeze(0).expand(3 * n, -1, -1, -1).contiguous()
    band = torch.arange(3).repeat_interleave(n)
    alpha = torch.tensor(alphas, dtype=torch.float32).repeat(3)
    out = FF.power_suppress(batch, band, alpha, radius_scale=radius_scale, backend=backend)
    fig, axes = subplots(3, n + 1, figsize=(1.6 * (n + 1), 5))
    for row, name in enumerate("LMH"):
        axes[row, 0].imshow(_to_hwc(image))
        axes[row, 0].set_ylabel(f"M_{name}")
        for j in range(n):
            axes[row, j + 1].imshow(_to_hwc(out[row * n + j]))
            if row == 0:
                axes[row, j + 1].set_title(f"alpha={alphas[j]:g}", fontsize=8)
    axes[0, 0].set_title("original", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)


def nfd_grid(image: torch.Tensor, path: str, sigma: float = 3.0, n_random: int = 5,
             nfd_bands=PAPER_BANDS, seed: int = 0, backend: str = "auto") -> str:
    """Fig. 4: top row noise in one band at a time (M = all bands but band i),
    bottom row random control weights. Writes a PNG."""
    from .transforms import sample_control_weights

    n = len(nfd_bands)
    g = torch.Generator().manual_seed(seed)
    # band i noisy: its control weight 0, the others 1
    one_band = 1 - torch.eye(n)
    weights = torch.cat([one_band, sample_control_weights(n_random, n, generator=g)])
    batch = image.unsqueeze(0).expand(len(weights), -1, -1, -1).contiguous()
    out = FF.nfd(batch, weights, sigma=sigma, nfd_bands=nfd_bands, generator=g, backend=backend)
    cols = max(n, n_random)
    fig, axes = subplots(2, cols + 1, figsize=(1.6 * (cols + 1), 3.6))
    for row in range(2):
        axes[row, 0].imshow(_to_hwc(image))
        for j in range(cols):
            k = row * n + j
            if (row == 0 and j < n) or (row == 1 and j < n_random):
                axes[row, j + 1].imshow(_to_hwc(out[k]))
                if row == 0:
                    axes[row, j + 1].set_title(f"noise in M_{j}", fontsize=8)
            else:
                axes[row, j + 1].axis("off")
    axes[0, 0].set_title("original", fontsize=8)
    axes[1, 0].set_ylabel("random M")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)
