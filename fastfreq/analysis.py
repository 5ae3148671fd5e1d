"""Fourier heat map of an image classifier (Yin et al., "A Fourier Perspective
on Model Robustness in Computer Vision", NeurIPS 2019, the paper's ref. [28]),
batched over basis images and test images, and the report that puts it
beside the first layer's PDM histogram (``fastfreq.pdm``).

Protocol. For every frequency ``(ky, kx)`` of the half plane (the rfft2
layout: ``H`` rows ``ky`` in FFT order, ``W // 2 + 1`` columns ``kx = 0 ..
W // 2``) the real basis image ``U = cos(2 pi (ky y / H + kx x / W))``,
scaled to L2 norm ``eps``, is added to every test image, to each channel
with its own random sign ``r``, and the result is clamped to the pixel range:
``x' = clamp(x + r eps U, lo, hi)``. The model sees ``input_transform(x')``:
the perturbation lives on the pixels, before the model's own input
normalisation (adding it to normalised images scales it by ``1 / std``
and clamps at the wrong place). ``error[ky, kx]`` is the fraction of
perturbed images misclassified, ``loss[ky, kx]`` their mean cross-entropy.

Batching. One forward batch holds several bases times all images (or one
basis times a slice of the images when the images alone fill a batch), so a
CIFAR map is 544 x N forward passes in a few hundred large batches instead
of 544 passes over the data set. The batch size comes from the free GPU
memory (a memory budget on the CPU) and a measured per-image footprint. The
signs are a counter-based stream (Philox, keyed by ``seed``), so the map is
the same for every chunking and device.
"""
from __future__ import annotations

import json
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks as chk
from ._progress import progress as progress_bar
from .masks import frequency_indices, radius
from .pdm import REGION_EDGES, _extent, draw_region_borders, gratings, region_masks
from .philox import philox4x32_10

#: Memory for one forward batch on the CPU when no ``memory_budget`` is given.
CPU_MEMORY_BUDGET = 1 << 30
#: Share of the free GPU memory one forward batch may use (the rest is the
#: model, the images and what the allocator keeps).
GPU_MEMORY_SHARE = 0.5
#: Largest forward batch chosen automatically (beyond it a GPU gains nothing).
MAX_BATCH = 16384
#: Signs per Philox call: four 32-bit words.
_SIGNS_PER_CALL = 128


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel on ``(B, C, H, W)`` batches: the usual
    ``input_transform`` (torchvision's ``Normalize`` does the same)."""

    def __init__(self, mean, std):
        super().__init__()
        # float64, cast to the images' dtype at use: float64 images keep their precision
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)


def half_plane(H: int, W: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ky, kx)`` of the ``H * (W // 2 + 1)`` half-plane frequencies, row by
    row in the rfft2 layout (float64)."""
    ky, _ = frequency_indices(H, W, device=device, dtype=torch.float64)
    kx = torch.arange(W // 2 + 1, device=device, dtype=torch.float64)
    return ky.repeat_interleave(len(kx)), kx.repeat(H)


def fourier_basis(H: int, W: int, eps: float, *, start: int = 0, stop: int | None = None, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """Basis images number ``start`` to ``stop`` of the half plane, each of L2
    norm ``eps``: ``(n, H, W)``."""
    ky, kx = half_plane(H, W, device)
    return gratings(H, W, ky[start:stop], kx[start:stop], eps).to(dtype)


def basis_signs(seed: int, start: int, stop: int, device=None) -> torch.Tensor:
    """Signs +-1 (float32) number ``start`` to ``stop`` of the stream keyed by
    ``seed``. In a heat map of ``N`` images with ``C`` channels, sign ``(f * N
    + n) * C + c`` goes with channel ``c`` of image ``n`` under basis ``f``.
    Sign ``i`` is bit ``i % 32`` of word ``(i // 32) % 4`` of Philox4x32-10 at
    counter ``i // 128``: any slice is computed on its own."""
    if stop <= start:
        return torch.zeros(0, device=device)
    first, last = start // _SIGNS_PER_CALL, (stop - 1) // _SIGNS_PER_CALL
    counters = torch.arange(first, last + 1, device=device, dtype=torch.int64)
    words = torch.stack(philox4x32_10(counters, torch.tensor(seed, dtype=torch.int64, device=device)), 1)
    bits = (words[:, :, None] >> torch.arange(32, device=device)) & 1
    offset = first * _SIGNS_PER_CALL
    return (1 - 2 * bits.reshape(-1)[start - offset:stop - offset]).to(torch.float32)


def full_plane(half: torch.Tensor, W: int) -> torch.Tensor:
    """The whole ``(H, W)`` plane in FFT order from a half-plane map ``(H, W //
    2 + 1)``: frequency ``(ky, kx)`` with ``kx < 0`` has the value of
    ``(-ky, -kx)`` (the same basis image)."""
    H = half.shape[0]
    i = torch.arange(H)[:, None]
    j = torch.arange(W)[None, :]
    mirror = j > W // 2
    return half[torch.where(mirror, (-i) % H, i), torch.where(mirror, W - j, j).expand(H, W)]


@dataclass
class FourierHeatmap:
    """A Fourier heat map: ``error`` and ``loss`` over the half plane ``(H, W //
    2 + 1)`` (rfft2 layout, float64), with the clean values on the same images."""

    error: torch.Tensor
    loss: torch.Tensor
    clean_error: float
    clean_loss: float
    eps: float
    seed: int
    n_images: int
    image_size: tuple[int, int]
    batch_size: int
    seconds: float
    meta: dict = field(default_factory=dict)

    def _values(self, which: str) -> torch.Tensor:
        if which not in ("error", "loss"):
            raise ValueError(f"which: expected 'error' or 'loss', got {which!r}")
        return getattr(self, which)

    def centred(self, which: str = "error") -> torch.Tensor:
        """The whole plane ``(H, W)`` with DC at ``[H // 2, W // 2]`` (fftshift)."""
        return torch.fft.fftshift(full_plane(self._values(which), self.image_size[1]))

    def radii(self) -> torch.Tensor:
        """|frequency| of every half-plane entry (cycles per image)."""
        return radius(*self.image_size, half=True, dtype=torch.float64)

    def radial_profile(self, which: str = "error") -> dict:
        """Mean over the half-plane entries whose |frequency| rounds to each
        integer radius: ``{"radius": [...], "value": [...], "count": [...]}``."""
        v = self._values(which).flatten()
        k = self.radii().round().long().flatten()
        counts = torch.bincount(k)
        sums = torch.bincount(k, weights=v)
        keep = counts > 0
        return {"radius": torch.nonzero(keep).flatten().tolist(),
                "value": (sums[keep] / counts[keep]).tolist(), "count": counts[keep].tolist()}

    def band_means(self, which: str = "error", radius_scale: float = 1.0) -> dict:
        """Mean over the half-plane entries in the paper's L, M and H regions
        (radius below 9.5, 9.5 to 15.5, above; times ``radius_scale``); None
        for a region with no frequency (small images)."""
        v = self._values(which)
        return {name: (float(v[m].mean()) if m.any() else None)
                for name, m in region_masks(self.radii(), radius_scale).items()}

    def to_dict(self, radius_scale: float = 1.0) -> dict:
        """Every number, JSON-ready."""
        H, W = self.image_size
        return {"layout": f"half plane {H} x {W // 2 + 1}: rows ky in FFT order "
                          f"({frequency_indices(H, W)[0].long().tolist()}), columns kx = 0 .. {W // 2}",
                "eps": self.eps, "seed": self.seed, "n_images": self.n_images, "image_size": [H, W],
                "batch_size": self.batch_size, "seconds": self.seconds,
                "clean_error": self.clean_error, "clean_loss": self.clean_loss,
                "region_edges": [e * radius_scale for e in REGION_EDGES],
                "band_means": {w: self.band_means(w, radius_scale) for w in ("error", "loss")},
                "radial_profile": {w: self.radial_profile(w) for w in ("error", "loss")},
                "error": self.error.tolist(), "loss": self.loss.tolist(), **self.meta}


# --------------------------------------------------------------------- checks

def _check_images(images, labels, pixel_range):
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images: expected a non-empty (N, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    chk.image_size(images.shape[2], images.shape[3])
    if images.dtype == torch.uint8:
        if tuple(pixel_range) != (0.0, 1.0):
            raise ValueError(f"pixel_range: uint8 images are read as [0, 1]; got {pixel_range!r}")
    elif not images.is_floating_point():
        raise ValueError(f"images: expected float images in pixel_range or uint8, got {images.dtype}")
    if (not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point()
            or labels.dtype == torch.bool or len(labels) != len(images)):
        raise ValueError(f"labels: expected a 1-D integer tensor of {len(images)} class indices, got "
                         f"{(labels.dtype, tuple(labels.shape)) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    if (isinstance(pixel_range, (str, bytes)) or not hasattr(pixel_range, "__len__")
            or len(pixel_range) != 2):
        raise ValueError(f"pixel_range: expected (lo, hi), got {pixel_range!r}")
    lo, hi = (chk.finite_float(v, "pixel_range") for v in pixel_range)
    if not lo < hi:
        raise ValueError(f"pixel_range: expected lo < hi, got {pixel_range!r}")
    return lo, hi


def _optional_positive_int(v, name: str):
    if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
        raise ValueError(f"{name}: expected None or a positive int, got {v!r}")
    return None if v is None else int(v)


def _model_device(model, device):
    if device is not None:
        return torch.device(device)
    for t in (*getattr(model, "parameters", lambda: [])(), *getattr(model, "buffers", lambda: [])()):
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------- batching

def _nbytes(out) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    if isinstance(out, dict):
        return sum(_nbytes(o) for o in out.values())
    return 0


def _forward(model, x, input_transform, amp_dtype):
    if input_transform is not None:
        x = input_transform(x)
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        return model(x)


def sample_bytes(model, x: torch.Tensor, input_transform=None, amp_dtype=None) -> int:
    """Memory one image takes in a forward batch, measured on ``x[:2]``: its
    copies (perturbed, transformed) plus twice the outputs of every leaf
    module (an upper bound on what no-grad inference keeps alive at once; the
    factor 2 covers functional ops between modules)."""
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(_nbytes(out)))
             for m in (model.modules() if isinstance(model, nn.Module) else ()) if not any(m.children())]
    try:
        logits = _forward(model, x[:2], input_transform, amp_dtype)
    finally:
        for h in hooks:
            h.remove()
    per = x[:1].numel() * 4 * 4 + 2 * (sum(sizes) + _nbytes(logits)) // len(x[:2])
    return max(1, per)


def auto_batch_size(per_sample: int, device, memory_budget: int | None = None) -> int:
    """Images per forward batch: ``memory_budget`` bytes (default: on a GPU
    ``GPU_MEMORY_SHARE`` of its free memory, on the CPU ``CPU_MEMORY_BUDGET``)
    over ``per_sample`` bytes, in ``[1, MAX_BATCH]``."""
    device = torch.device(device)
    if memory_budget is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            memory_budget = int(GPU_MEMORY_SHARE * (free + cached))
        else:
            memory_budget = CPU_MEMORY_BUDGET
    return int(min(MAX_BATCH, max(1, memory_budget // per_sample)))


def _chunks(n_freq: int, N: int, batch: int):
    """``(f0, f1, n0, n1)``: several bases x all images, or one basis x a slice
    of the images; either way one contiguous range of the sign stream."""
    if N <= batch:
        step = batch // N
        return [(f, min(f + step, n_freq), 0, N) for f in range(0, n_freq, step)]
    return [(f, f + 1, n, min(n + batch, N)) for f in range(n_freq) for n in range(0, N, batch)]


@torch.no_grad()
def fourier_heatmap(model: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float = 4.0, *,
                    input_transform: Callable | None = None, pixel_range=(0.0, 1.0), seed: int = 0,
                    batch_size: int | None = None, memory_budget: int | None = None, device=None,
                    amp_dtype: torch.dtype | None = None, progress: bool = True) -> FourierHeatmap:
    """The Fourier heat map of a classifier (see the module docstring).

    model: any callable from ``(B, C, H, W)`` batches to ``(B, classes)``
        logits (an ``nn.Module`` is put in eval mode for the call and given
        back in its own mode).
    images: ``(N, C, H, W)`` in ``pixel_range`` (uint8: read as [0, 1]),
        NOT normalised: the model's normalisation goes in ``input_transform``.
    labels: ``(N,)`` class indices.
    eps: L2 norm of each basis image (4.0 is Yin et al.'s CIFAR-10 value).
    input_transform: applied to each perturbed batch before the model, e.g.
        ``Normalize(mean, std)``.
    pixel_range: the clamp after the perturbation.
    seed: key of the sign stream (``basis_signs``).
    batch_size: images per forward batch; default from ``memory_budget``
        (default: the free GPU memory, ``CPU_MEMORY_BUDGET`` on the CPU).
    device: where to compute (default: the model's).
    amp_dtype: run the model under autocast in this dtype (e.g. bfloat16).
    """
    lo, hi = _check_images(images, labels, pixel_range)
    eps = chk.nonneg_float(eps, "eps")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed: expected an int in [0, 2**63), got {seed!r}")
    if not callable(model):
        raise TypeError(f"model: expected a callable classifier, got {type(model).__name__}")
    if input_transform is not None and not callable(input_transform):
        raise TypeError(f"input_transform: expected None or a callable, got {type(input_transform).__name__}")
    batch_size = _optional_positive_int(batch_size, "batch_size")
    memory_budget = _optional_positive_int(memory_budget, "memory_budget")
    device = _model_device(model, device)

    x = images.to(device)
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    if float(x.min()) < lo or float(x.max()) > hi:
        raise ValueError(f"images: values in [{float(x.min()):.3g}, {float(x.max()):.3g}] leave "
                         f"pixel_range {(lo, hi)}; pass the images before normalisation (put the "
                         "normalisation in input_transform) or set pixel_range")
    y = labels.to(device)
    N, C, H, W = x.shape
    n_freq = H * (W // 2 + 1)

    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        t0 = time.perf_counter()
        logits = _forward(model, x[:2], input_transform, amp_dtype)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(x[:2]):
            raise ValueError(f"model: expected (B, classes) logits for a batch of {len(x[:2])}, got "
                             f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
        if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
            raise ValueError(f"labels: expected class indices in [0, {logits.shape[1]}), got "
                             f"[{int(y.min())}, {int(y.max())}]")
        batch = batch_size or auto_batch_size(sample_bytes(model, x, input_transform, amp_dtype), device,
                                              memory_budget)

        def evaluate(xb, yb):
            out = _forward(model, xb, input_transform, amp_dtype)
            out = out if out.dtype == torch.float64 else out.float()  # half-precision logits: loss in float32
            return (out.argmax(1) != yb), F.cross_entropy(out, yb, reduction="none")

        wrong = torch.zeros(n_freq, dtype=torch.float64, device=device)
        loss = torch.zeros(n_freq, dtype=torch.float64, device=device)
        clean = torch.zeros(2, dtype=torch.float64, device=device)
        for n in range(0, N, batch):
            w, l_ = evaluate(x[n:n + batch], y[n:n + batch])
            clean += torch.stack([w.sum(dtype=torch.float64), l_.sum(dtype=torch.float64)])

        chunks = _chunks(n_freq, N, batch)
        if progress:
            chunks = progress_bar(chunks, desc="Fourier heat map", unit="batch")
        for f0, f1, n0, n1 in chunks:
            nb, ni = f1 - f0, n1 - n0
            basis = fourier_basis(H, W, eps, start=f0, stop=f1, device=device, dtype=x.dtype)
            signs = basis_signs(seed, (f0 * N + n0) * C, ((f1 - 1) * N + n1) * C, device)
            signs = signs.view(nb, ni, C, 1, 1).to(x.dtype)
            xb = (x[None, n0:n1] + signs * basis[:, None, None]).clamp_(lo, hi).flatten(0, 1)
            w, l_ = evaluate(xb, y[n0:n1].repeat(nb))
            wrong[f0:f1] += w.view(nb, ni).sum(1, dtype=torch.float64)
            loss[f0:f1] += l_.view(nb, ni).sum(1, dtype=torch.float64)
        seconds = time.perf_counter() - t0
    finally:
        if was_training is not None:
            model.train(was_training)
    clean = (clean / N).tolist()
    return FourierHeatmap(error=(wrong / N).view(H, -1).cpu(), loss=(loss / N).view(H, -1).cpu(),
                          clean_error=clean[0], clean_loss=clean[1], eps=eps, seed=int(seed), n_images=N,
                          image_size=(H, W), batch_size=batch, seconds=seconds)


# --------------------------------------------------------------------- figures

def _fmt(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def draw_heatmap(fig, ax, hm: FourierHeatmap, which: str = "error", radius_scale: float = 1.0,
                 title: str = ""):
    """The centred map on ``ax``: axes in cycles per image, a colour bar, the
    L/M/H borders and the band means in the title."""
    H, W = hm.image_size
    vmax = 1.0 if which == "error" else None
    im = ax.imshow(hm.centred(which).numpy(), cmap="jet", vmin=0.0, vmax=vmax, extent=_extent(H, W))
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("error rate" if which == "error" else "mean cross-entropy", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    draw_region_borders(ax, radius_scale, color="white")
    b = {k: _fmt(v, 3) for k, v in hm.band_means(which, radius_scale).items()}
    clean = hm.clean_error if which == "error" else hm.clean_loss
    ax.set_title((title + "\n" if title else "") + f"Fourier heat map ({which}), eps {hm.eps:g}, "
                 f"{hm.n_images} images\nclean {clean:.3f} | L {b['L']} | M {b['M']} | H {b['H']}",
                 fontsize=7)
    ax.set_xlabel("kx (cycles per image)", fontsize=7)
    ax.set_ylabel("ky (cycles per image)", fontsize=7)
    ax.tick_params(labelsize=6)
    return im


def draw_radial(ax, hm: FourierHeatmap, which: str = "error", radius_scale: float = 1.0):
    """``which`` against |frequency|, the clean value and the L/M/H borders."""
    p = hm.radial_profile(which)
    ax.plot(p["radius"], p["value"], marker="o", ms=3, lw=1.2, label=f"eps {hm.eps:g}")
    clean = hm.clean_error if which == "error" else hm.clean_loss
    ax.axhline(clean, color="grey", lw=0.8, ls=":", label="clean")
    edges = [e * radius_scale for e in REGION_EDGES]
    for e in edges:
        ax.axvline(e, color="k", lw=0.8, ls="--")
    top = max(p["value"] + [clean]) * 1.08 or 1.0
    for name, x in zip("LMH", (edges[0] / 2, sum(edges) / 2, edges[1] + 2)):
        ax.text(x, top, name, ha="center", va="top", fontsize=8)
    ax.set_ylim(0, top * 1.05)
    ax.set_xlabel("|frequency| (cycles per image)", fontsize=7)
    ax.set_ylabel("error rate" if which == "error" else "mean cross-entropy", fontsize=7)
    ax.set_title(f"radial profile ({which})", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def plot_heatmap(hm: FourierHeatmap, path: str, which: str = "error", title: str = "",
                 radius_scale: float = 1.0) -> str:
    from .figures import save, subplots

    fig, ax = subplots(1, 1, figsize=(3.8, 3.4))
    draw_heatmap(fig, ax, hm, which, radius_scale, title)
    return save(fig, path)


def plot_radial(hm: FourierHeatmap, path: str, radius_scale: float = 1.0) -> str:
    from .figures import save, subplots

    fig, axes = subplots(1, 2, figsize=(7.2, 2.8))
    for ax, which in zip(axes, ("error", "loss")):
        draw_radial(ax, hm, which, radius_scale)
    return save(fig, path)


def plot_corruptions(corruption_acc: dict, path: str, clean_acc: float | None = None) -> str:
    """Mean accuracy over the five severities per corruption, lowest first."""
    from .figures import save, subplots

    means = sorted(((sum(a) / len(a), n) for n, a in corruption_acc.items()))
    fig, ax = subplots(1, 1, figsize=(6.4, 0.22 * len(means) + 1.0))
    ax.barh([n for _, n in means], [m for m, _ in means], color="tab:blue")
    if clean_acc is not None:
        ax.axvline(clean_acc, color="k", ls="--", lw=0.8, label=f"clean {clean_acc:.1f}%")
        ax.legend(fontsize=6, loc="lower right")
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%), mean over severities 1-5", fontsize=7)
    ax.set_title("CIFAR-10-C accuracy per corruption", fontsize=8)
    ax.tick_params(labelsize=6)
    return save(fig, path)


def plot_summary(hm: FourierHeatmap, path: str, pdm_hist: torch.Tensor | None = None, title: str = "",
                 radius_scale: float = 1.0) -> str:
    """One figure: heat map, radial profile and (when given) the PDM histogram."""
    from . import pdm
    from .figures import save, subplots

    n = 3 if pdm_hist is not None else 2
    fig, axes = subplots(1, n, figsize=(3.9 * n, 3.4))
    draw_heatmap(fig, axes[0], hm, radius_scale=radius_scale)
    draw_radial(axes[1], hm, radius_scale=radius_scale)
    if pdm_hist is not None:
        pdm.draw_histogram(fig, axes[2], pdm_hist, "PDM response histogram (first block)", radius_scale)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, path)


# --------------------------------------------------------------------- report

def _atomic_text(text: str, path: str):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(out: str, hm: FourierHeatmap, *, pdm: dict | None = None, corruption_acc: dict | None = None,
                 clean_acc: float | None = None, title: str = "", meta: dict | None = None,
                 radius_scale: float = 1.0) -> dict:
    """Figures, ``report.json`` (every number) and ``report.md`` under ``out``.

    pdm: ``fastfreq.pdm.analyse``'s result (``histogram``, ``band_shares``,
    optionally ``responses``); corruption_acc: ``{name: [acc % at severity
    1..5]}``; clean_acc: the model's clean accuracy (%) on its test set.
    Returns the paths written."""
    from . import pdm as pdm_mod

    os.makedirs(out, exist_ok=True)
    paths = {"heatmap": plot_heatmap(hm, os.path.join(out, "heatmap.png"), title=title,
                                     radius_scale=radius_scale),
             "heatmap_loss": plot_heatmap(hm, os.path.join(out, "heatmap_loss.png"), "loss", title,
                                          radius_scale),
             "radial_profile": plot_radial(hm, os.path.join(out, "radial_profile.png"), radius_scale)}
    if pdm is not None:
        paths["pdm"] = pdm_mod.plot_histogram(pdm["histogram"], os.path.join(out, "pdm.png"), title,
                                              pdm.get("responses"))
    if corruption_acc:
        paths["corruptions"] = plot_corruptions(corruption_acc, os.path.join(out, "corruptions.png"),
                                                clean_acc)
    paths["summary"] = plot_summary(hm, os.path.join(out, "summary.png"),
                                    None if pdm is None else pdm["histogram"], title, radius_scale)
    numbers_ = {"title": title, **(meta or {}), "fourier_heatmap": hm.to_dict(radius_scale)}
    if pdm is not None:
        numbers_["pdm"] = {"band_shares": pdm["band_shares"], "histogram_centred": pdm["histogram"].tolist()}
    if clean_acc is not None:
        numbers_["clean_acc"] = clean_acc
    if corruption_acc:
        numbers_["corruption_acc"] = corruption_acc
    paths["json"] = os.path.join(out, "report.json")
    _atomic_text(json.dumps(numbers_, indent=1), paths["json"])
    paths["markdown"] = os.path.join(out, "report.md")
    _atomic_text(_markdown(hm, pdm, corruption_acc, clean_acc, title, meta or {}, radius_scale, paths),
                 paths["markdown"])
    return paths


def _markdown(hm, pdm, corruption_acc, clean_acc, title, meta, radius_scale, paths) -> str:
    H, W = hm.image_size
    lo, hi = (e * radius_scale for e in REGION_EDGES)
    rel = {k: os.path.basename(v) for k, v in paths.items()}
    e = {k: _fmt(v, 4) for k, v in hm.band_means("error", radius_scale).items()}
    ls = {k: _fmt(v, 4) for k, v in hm.band_means("loss", radius_scale).items()}
    lines = [f"# Frequency report{': ' + title if title else ''}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [f"- Fourier heat map: {H * (W // 2 + 1)} basis images ({H} x {W // 2 + 1} half plane) of "
              f"L2 norm {hm.eps:g}, each added with a random sign per channel to {hm.n_images} test images "
              f"before the input normalisation and clamped to the pixel range (Yin et al. 2019); sign "
              f"seed {hm.seed}; {hm.seconds:.1f} s in batches of {hm.batch_size}.",
              f"- Regions: L |f| < {lo:g}, M {lo:g} <= |f| < {hi:g}, H |f| >= {hi:g} cycles per image "
              "(the paper's mask crossings).", "",
              "| | clean | L | M | H |", "|---|---|---|---|---|",
              f"| error rate | {hm.clean_error:.4f} | {e['L']} | {e['M']} | {e['H']} |",
              f"| mean loss | {hm.clean_loss:.4f} | {ls['L']} | {ls['M']} | {ls['H']} |", "",
              f"![summary]({rel['summary']})", "",
              f"Heat maps: [error]({rel['heatmap']}), [loss]({rel['heatmap_loss']}); "
              f"[radial profile]({rel['radial_profile']}).", ""]
    if pdm is not None:
        s = pdm["band_shares"]
        lines += ["## First-layer frequency response (PDM)", "",
                  f"Share of the vote histogram in L / M / H: {s['L']:.3f} / {s['M']:.3f} / {s['H']:.3f}.",
                  "", f"![PDM]({rel['pdm']})", ""]
    if corruption_acc:
        lines += ["## CIFAR-10-C accuracy (%)", ""]
        if clean_acc is not None:
            lines += [f"Clean accuracy {clean_acc:.2f}%.", ""]
        lines += ["| corruption | sev 1 | sev 2 | sev 3 | sev 4 | sev 5 | mean |",
                  "|---|---|---|---|---|---|---|"]
        for name, accs in corruption_acc.items():
            lines.append(f"| {name} | " + " | ".join(f"{a:.1f}" for a in accs) + f" | {sum(accs) / len(accs):.1f} |")
        lines += ["", f"![corruptions]({rel['corruptions']})", ""]
    lines += [f"All numbers: [{rel['json']}]({rel['json']}).", ""]
    return "\n".join(lines)


__all__ = ["FourierHeatmap", "Normalize", "auto_batch_size", "basis_signs", "draw_heatmap", "draw_radial",
           "fourier_basis", "fourier_heatmap", "full_plane", "half_plane", "plot_corruptions", "plot_heatmap",
           "plot_radial", "plot_summary", "sample_bytes", "write_report"]
