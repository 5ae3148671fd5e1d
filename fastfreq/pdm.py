"""Point Detection Maps and the frequency response of a first layer (Section 3.4).

A channel PDM is a mid-grey image (0.5) with a pure grating of one frequency
``(ky, kx)`` and strength ``t`` (its L2 norm) added to one input channel. The
response of output channel ``k`` of the first block is the spatial mean of its
output; each channel's response map over ``(c, ky, kx)`` is scaled to [0, 1]
after clipping its extreme 1 % at each end, and the maps "vote" into a
histogram over ``(ky, kx)``, shown with DC in the centre (Fig. 6).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from . import _checks as chk
from ._progress import progress as progress_bar
from .masks import frequency_indices, radius

#: Radii where the L/M and M/H suppression masks cross (eq. 4): the borders of
#: the L, M and H regions used for band shares (times radius_scale).
REGION_EDGES = (9.5, 15.5)


def gratings(H: int, W: int, ky: torch.Tensor, kx: torch.Tensor, t: float, phi: float = 0.0):
    """Gratings ``(n, H, W)`` of L2 norm ``t`` at the frequencies ``(ky[n], kx[n])``
    (float64, on ``ky``'s device); the ones that vanish (Nyquist with a sine
    phase) are 0. With ``phi = 0`` these are Yin et al.'s real Fourier basis
    images (``fastfreq.analysis``)."""
    y = torch.arange(H, device=ky.device, dtype=torch.float64)
    x = torch.arange(W, device=ky.device, dtype=torch.float64)
    phase = 2 * math.pi * (ky[:, None, None] * y[None, :, None] / H
                           + kx[:, None, None] * x[None, None, :] / W) + phi
    wave = torch.cos(phase)
    norm = wave.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
    return torch.where(norm > 1e-9, t * wave / norm.clamp_min(1e-9), torch.zeros_like(wave))


def _probe_indices(C: int, H: int, W: int, device):
    """(c, ky, kx) of probe number ``n`` in the order c, then FFT rows, then columns."""
    ky, kx = frequency_indices(H, W, device=device, dtype=torch.float64)
    n = torch.arange(C * H * W, device=device)
    return n // (H * W), ky[(n // W) % H], kx[n % W]


def channel_pdms(C: int, H: int, W: int, t: float = 4 * math.sqrt(2), phi: float = 0.0, *,
                 start: int = 0, stop: int | None = None, device=None,
                 dtype=torch.float32) -> torch.Tensor:
    """Channel PDMs number ``start`` to ``stop`` (default all ``C*H*W``) as a
    ``(n, C, H, W)`` batch. Probe ``c*H*W + i*W + j`` has the grating of
    frequency ``(ky[i], kx[j])`` (FFT order) on input channel ``c``."""
    chk.image_size(H, W)
    if not isinstance(C, int) or C < 1:
        raise ValueError(f"C: expected a positive int, got {C!r}")
    if device is not None:
        chk.real_device(device, "device")
    t = chk.nonneg_float(t, "t")
    c, ky, kx = (v[start:stop] for v in _probe_indices(C, H, W, device))
    probes = torch.full((len(c), C, H, W), 0.5, device=device, dtype=torch.float64)
    probes[torch.arange(len(c), device=device), c] += gratings(H, W, ky, kx, t, phi)
    return probes.to(dtype)


@torch.no_grad()
def frequency_response(first_block: Callable[[torch.Tensor], torch.Tensor], C: int, H: int, W: int,
                       t: float = 4 * math.sqrt(2), *, input_transform: Callable | None = None,
                       batch_size: int = 256, device=None, progress: bool = False) -> torch.Tensor:
    """Mean response of every output channel to every channel PDM:
    ``(K, C, H, W)`` with frequencies in FFT order (DC at ``[.., 0, 0]``).
    Probes are built batch by batch on ``device``.

    The probes are images in [0, 1] (grey 0.5 plus a grating). A model that
    normalises its input outside the network (``(x - mean) / std`` in the data
    loader, torchvision's ``Normalize``) must see the probes through the same
    normalisation: pass it as ``input_transform`` (applied to each probe batch
    before ``first_block``); without it the first layer sees inputs it never
    saw in training."""
    if not callable(first_block):
        raise TypeError(f"first_block: expected a callable from images to feature maps, got "
                        f"{type(first_block).__name__}")
    if input_transform is not None and not callable(input_transform):
        raise TypeError(f"input_transform: expected None or a callable from images to images, got "
                        f"{type(input_transform).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    chk.image_size(H, W)
    if device is not None:
        chk.real_device(device, "device")
    chunks = range(0, C * H * W, batch_size)
    if progress:
        chunks = progress_bar(chunks, desc="PDM probes", unit="batch")
    out = []
    for i in chunks:
        probes = channel_pdms(C, H, W, t, start=i, stop=i + batch_size, device=device)
        feat = first_block(probes if input_transform is None else input_transform(probes))
        if not isinstance(feat, torch.Tensor) or feat.dim() != 4:
            raise ValueError("first_block: expected it to return a (B, K, H', W') feature map, got "
                             f"{tuple(feat.shape) if isinstance(feat, torch.Tensor) else type(feat).__name__}")
        out.append(feat.float().mean(dim=(2, 3)))
    resp = torch.cat(out)  # (C*H*W, K)
    return resp.T.reshape(-1, C, H, W)


def normalise_responses(resp: torch.Tensor, clip: float = 0.01) -> torch.Tensor:
    """Scale each output channel's map to [0, 1] after clipping the extreme
    ``clip`` fraction at each end."""
    if resp.dim() != 4:
        raise ValueError(f"resp: expected (K, C, H, W), got {tuple(resp.shape)}")
    clip = chk.probability(clip, "clip")
    flat = resp.reshape(resp.shape[0], -1).double()
    lo = torch.quantile(flat, clip, dim=1, keepdim=True)
    hi = torch.quantile(flat, 1 - clip, dim=1, keepdim=True)
    scaled = (flat.clamp(lo, hi) - lo) / (hi - lo).clamp_min(1e-12)
    return scaled.reshape(resp.shape).to(resp.dtype)


def response_histogram(resp: torch.Tensor, clip: float = 0.01, *, centred: bool = True) -> torch.Tensor:
    """The vote histogram ``(H, W)``: sum over output and input channels of the
    normalised maps; DC in the centre when ``centred`` (``fftshift``)."""
    hist = normalise_responses(resp, clip).sum(dim=(0, 1))
    return torch.fft.fftshift(hist) if centred else hist


def region_masks(r: torch.Tensor, radius_scale: float = 1.0) -> dict:
    """``{"L", "M", "H"}`` boolean masks of the radii ``r``: L below 9.5, M from
    9.5 to 15.5, H from 15.5 (times ``radius_scale``)."""
    lo, hi = (e * chk.radius_scale(radius_scale) for e in REGION_EDGES)
    return {"L": r < lo, "M": (r >= lo) & (r < hi), "H": r >= hi}


def band_shares(hist: torch.Tensor, *, centred: bool = True, radius_scale: float = 1.0) -> dict:
    """Fraction of the histogram mass in the L (radius < 9.5), M (< 15.5) and H
    regions, radii times ``radius_scale``; the three sum to 1."""
    if hist.dim() != 2:
        raise ValueError(f"hist: expected an (H, W) histogram, got {tuple(hist.shape)}")
    H, W = hist.shape
    r = radius(H, W, device=hist.device, dtype=torch.float64)
    if centred:
        r = torch.fft.fftshift(r)
    h = hist.double().clamp_min(0)
    total = h.sum().clamp_min(1e-300)
    return {k: float(h[m].sum() / total) for k, m in region_masks(r, radius_scale).items()}


def flat_channels(resp: torch.Tensor) -> list[bool]:
    """Per output channel: whether its response does not vary with the probe
    (e.g. a ReLU channel that never fires); its normalised map is all 0."""
    spread = resp.flatten(1).double().std(dim=1)
    return (spread <= 1e-7 * resp.abs().max().double().clamp_min(1e-30)).tolist()


def _extent(H: int, W: int):
    """imshow extent of a centred (H, W) spectrum: frequency indices on the axes."""
    return [-(W // 2) - 0.5, (W - 1) // 2 + 0.5, (H - 1) // 2 + 0.5, -(H // 2) - 0.5]


def draw_region_borders(ax, radius_scale: float = 1.0, color: str = "cyan"):
    """The L/M and M/H borders (``REGION_EDGES`` times radius_scale) as dashed
    circles around DC on a centred spectrum drawn with ``_extent``."""
    from matplotlib.patches import Circle

    for r in REGION_EDGES:
        ax.add_patch(Circle((0, 0), r * radius_scale, fill=False, ls="--", lw=0.8, color=color))


def draw_histogram(fig, ax, hist: torch.Tensor, title: str = "", radius_scale: float = 1.0):
    """The centred histogram on ``ax`` with a colourbar (votes) and the L/M/H
    region borders (dashed circles at ``REGION_EDGES`` times radius_scale),
    labelled with the band shares."""
    H, W = hist.shape
    im = ax.imshow(hist.cpu().numpy(), cmap="inferno", extent=_extent(H, W))
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.ax.set_title("votes", fontsize=6)
    cb.ax.tick_params(labelsize=6)
    draw_region_borders(ax, radius_scale)
    s = band_shares(hist, radius_scale=radius_scale)
    ax.set_title((title + "\n" if title else "") + f"L {s['L']:.2f} | M {s['M']:.2f} | H {s['H']:.2f}",
                 fontsize=8)
    ax.set_xlabel("kx", fontsize=7)
    ax.set_ylabel("ky", fontsize=7)
    ax.tick_params(labelsize=6)
    return im


def plot_histogram(hist: torch.Tensor, path: str, title: str = "", resp: torch.Tensor | None = None,
                   max_channels: int = 16) -> str:
    """Heat map of the centred histogram with a colourbar and the L/M/H borders
    (optionally with the first ``max_channels`` normalised per-channel maps,
    averaged over input channels; a channel whose response does not vary with
    the frequency, e.g. a dead ReLU channel, is marked "flat"). PNG."""
    from .figures import save, subplots

    n = 0 if resp is None else min(max_channels, resp.shape[0])
    cols = 1 + (min(n, 8) if n else 0)
    rows = 1 if n <= 8 else 2
    fig, axes = subplots(rows, cols, figsize=(2.4 * cols + 0.6, 2.4 * rows), squeeze=False)
    H, W = hist.shape
    draw_histogram(fig, axes[0, 0], hist, title or "response histogram")
    if n:
        maps = torch.fft.fftshift(normalise_responses(resp).mean(dim=1), dim=(-2, -1))
        flat = flat_channels(resp)
        for k in range(n):
            ax = axes[k // 8, 1 + k % 8]
            ax.imshow(maps[k].cpu().numpy(), cmap="gray", vmin=0, vmax=1, extent=_extent(H, W))
            ax.set_title(f"channel {k}" + (" (flat)" if flat[k] else ""), fontsize=7)
    for ax in axes.ravel()[1:]:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel():
        if not ax.images:
            ax.axis("off")
    if n:
        fig.text(0.5, -0.02, "channel maps: response per frequency scaled to [0, 1] (white = "
                 "strongest); flat = the channel's output does not depend on the probe "
                 "(e.g. a ReLU that never fires), drawn black", ha="center", fontsize=6)
    return save(fig, path)


def analyse(first_block, C: int, H: int, W: int, path: str | None = None, *, t: float = 4 * math.sqrt(2),
            input_transform: Callable | None = None, title: str = "", device=None,
            batch_size: int = 256) -> dict:
    """One call: responses, histogram, band shares, and the figure when ``path``
    is given (``input_transform``: see ``frequency_response``)."""
    resp = frequency_response(first_block, C, H, W, t, input_transform=input_transform, device=device,
                              batch_size=batch_size)
    hist = response_histogram(resp)
    result = {"histogram": hist, "responses": resp, "band_shares": band_shares(hist)}
    if path is not None:
        result["figure"] = plot_histogram(hist, path, title, resp)
    return result


__all__ = ["channel_pdms", "gratings", "frequency_response", "normalise_responses", "response_histogram",
           "region_masks", "band_shares", "draw_histogram", "flat_channels", "plot_histogram", "analyse", "REGION_EDGES"]
