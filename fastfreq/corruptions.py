"""Common corruptions of CIFAR-10-C (Hendrycks & Dietterich, paper ref. [9]),
batched in torch with the published CIFAR severity constants.

Every function takes images ``(B, 3, H, W)`` (or ``(3, H, W)``) in [0, 1] on
any device and a severity 1..5, and returns images in [0, 1] of the same shape
and device. The noise corruptions take a ``torch.Generator``. ``pixelate`` and
``jpeg_compression`` go through Pillow image by image (on the CPU), as the
original does; the rest are tensor ops. ``tests/test_data.py``
(``test_corruptions_match_the_cifar10c_sample``) compares the per-severity
mean absolute change with the CIFAR-10-C sample when it is present (table in
``docs/corruptions.md``). Empty batches and images of any size >= 1 pixel
are accepted. NaN in gives NaN out: the tensor corruptions carry it where
it falls; ``pixelate`` and ``jpeg_compression`` (8-bit Pillow images, which
cannot hold NaN) return an image holding a NaN as all NaN.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

# CIFAR-10-C severity constants (the CIFAR variant of the generator).
SEVERITY = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}


def _prep(x, severity, name):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor of images in [0, 1], got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity: expected an int in 1..5, got {severity!r}")
    single = x.dim() == 3
    x4 = x.unsqueeze(0) if single else x
    if x4.dim() != 4 or x4.shape[1] != 3:
        raise ValueError(f"x: expected (B, 3, H, W) or (3, H, W) RGB images, got {tuple(x.shape)}")
    return x4, SEVERITY[name][severity - 1], single


def _out(y, single):
    y = y.clamp(0, 1)
    return y[0] if single else y


def gaussian_noise(x, severity=1, generator=None):
    x4, c, single = _prep(x, severity, "gaussian_noise")
    n = torch.randn(x4.shape, generator=generator, device=x4.device, dtype=x4.dtype)
    return _out(x4 + c * n, single)


def shot_noise(x, severity=1, generator=None):
    x4, c, single = _prep(x, severity, "shot_noise")
    # the Poisson rate must be a number >= 0: NaN pixels are drawn at rate 0
    # and put back as NaN; values outside [0, 1] are clipped first
    nan = x4.isnan()
    rate = torch.where(nan, 0.0, x4).clamp(0, 1) * c
    y = torch.poisson(rate, generator=generator) / c
    return _out(torch.where(nan, float("nan"), y), single)


def impulse_noise(x, severity=1, generator=None):
    """Salt and pepper: each element is replaced with probability ``c``, by 0
    or 1 with equal chance."""
    x4, c, single = _prep(x, severity, "impulse_noise")
    u = torch.rand(x4.shape, generator=generator, device=x4.device, dtype=x4.dtype)
    salt = torch.rand(x4.shape, generator=generator, device=x4.device, dtype=x4.dtype) < 0.5
    y = torch.where(u < c, salt.to(x4.dtype), x4)
    return _out(y, single)


def speckle_noise(x, severity=1, generator=None):
    x4, c, single = _prep(x, severity, "speckle_noise")
    n = torch.randn(x4.shape, generator=generator, device=x4.device, dtype=x4.dtype)
    return _out(x4 + x4 * c * n, single)


def _conv_same(x4, kernel, mode):
    """Depthwise 2-D filtering with a (k, k) kernel and the given padding mode."""
    k = kernel.shape[-1]
    xp = _pad(x4, k // 2, mode)
    w = kernel.to(x4)[None, None].expand(x4.shape[1], 1, k, k)
    return F.conv2d(xp, w, groups=x4.shape[1])


def _pad(x4, p: int, mode: str):
    """``F.pad`` by ``p`` on every side; 'reflect' needs ``p < side``, so small
    images are reflected in steps (each step reflects the padded image)."""
    if mode != "reflect":
        return F.pad(x4, (p, p, p, p), mode=mode)
    if min(x4.shape[-2:]) < 2:  # nothing to reflect in a 1-pixel side
        return F.pad(x4, (p, p, p, p), mode="replicate")
    while p > 0:
        step = min(p, x4.shape[-2] - 1, x4.shape[-1] - 1)
        x4 = F.pad(x4, (step, step, step, step), mode="reflect")
        p -= step
    return x4


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def gaussian_blur(x, severity=1):
    """Gaussian filter of std ``c`` (scipy/skimage: truncate 4, edge mode 'nearest')."""
    x4, c, single = _prep(x, severity, "gaussian_blur")
    return _out(_conv_same(x4, _gaussian_kernel(c), "replicate"), single)


def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """The generator's aliased disk (17x17 for radius <= 8), smoothed by a 3x3
    Gaussian of std ``alias_blur`` as cv2.GaussianBlur does."""
    L = torch.arange(-8, 9, dtype=torch.float64)
    X, Y = torch.meshgrid(L, L, indexing="xy")
    d = ((X ** 2 + Y ** 2) <= radius ** 2).to(torch.float64)
    d = d / d.sum()
    t = torch.arange(-1, 2, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / alias_blur) ** 2)
    g = g / g.sum()
    k = torch.outer(g, g)
    # cv2.GaussianBlur's default border (reflect 101) on the 17x17 kernel image
    dp = F.pad(d[None, None], (1, 1, 1, 1), mode="reflect")
    return F.conv2d(dp, k[None, None])[0, 0]


def defocus_blur(x, severity=1):
    x4, (radius, alias), single = _prep(x, severity, "defocus_blur")
    # cv2.filter2D's default border is reflect-101 ('reflect' in torch); the
    # 17x17 kernel needs 8 pixels (in steps on sides of 8 or fewer)
    return _out(_conv_same(x4, _disk(radius, alias), "reflect"), single)


def contrast(x, severity=1):
    x4, c, single = _prep(x, severity, "contrast")
    means = x4.mean(dim=(2, 3), keepdim=True)
    return _out((x4 - means) * c + means, single)


def rgb_to_hsv(x4: torch.Tensor) -> torch.Tensor:
    r, g, b = x4.unbind(1)
    maxc, _ = x4.max(dim=1)
    minc, _ = x4.min(dim=1)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    dz = delta.clamp_min(1e-12)
    h = torch.where(maxc == r, ((g - b) / dz) % 6,
                    torch.where(maxc == g, (b - r) / dz + 2, (r - g) / dz + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.unbind(1)
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(hsv)
    for k, (rr, gg, bb) in enumerate(choices):
        m = (i == k)[:, None]
        out = torch.where(m, torch.stack([rr, gg, bb], dim=1), out)
    return out


def brightness(x, severity=1):
    x4, c, single = _prep(x, severity, "brightness")
    hsv = rgb_to_hsv(x4)
    hsv = torch.cat([hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)], dim=1)
    return _out(hsv_to_rgb(hsv), single)


def saturate(x, severity=1):
    x4, (scale, shift), single = _prep(x, severity, "saturate")
    hsv = rgb_to_hsv(x4)
    hsv = torch.cat([hsv[:, :1], (hsv[:, 1:2] * scale + shift).clamp(0, 1), hsv[:, 2:]], dim=1)
    return _out(hsv_to_rgb(hsv), single)


def _per_image_pil(x4, fn):
    from PIL import Image

    if x4.shape[0] == 0:
        return x4.clone()
    arr = (x4.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([np.asarray(fn(Image.fromarray(a)).convert("RGB")) for a in arr])
    y = torch.from_numpy(out).to(x4.device).permute(0, 3, 1, 2).to(x4.dtype) / 255
    # 8-bit Pillow images cannot hold NaN (it would become 0): an image with
    # a NaN comes back all NaN rather than finite, as no pixel of it is defined
    nan = x4.isnan().flatten(1).any(dim=1)
    return torch.where(nan[:, None, None, None], float("nan"), y)


def pixelate(x, severity=1):
    """Box down-sampling to ``c`` of the size and box up-sampling back (Pillow)."""
    from PIL import Image

    x4, c, single = _prep(x, severity, "pixelate")
    H, W = x4.shape[-2:]

    def fn(im):
        small = (max(1, int(W * c)), max(1, int(H * c)))
        return im.resize(small, Image.BOX).resize((W, H), Image.BOX)

    return _out(_per_image_pil(x4, fn), single)


def jpeg_compression(x, severity=1):
    """JPEG encode/decode at quality ``c`` (Pillow)."""
    from PIL import Image

    x4, c, single = _prep(x, severity, "jpeg_compression")

    def fn(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=c)
        buf.seek(0)
        return Image.open(buf)

    return _out(_per_image_pil(x4, fn), single)


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise, "defocus_blur": defocus_blur, "gaussian_blur": gaussian_blur,
    "contrast": contrast, "brightness": brightness, "saturate": saturate, "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
NOISY = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"}


def corrupt(x, name: str, severity: int, generator=None):
    """Apply the built-in corruption ``name`` at ``severity``."""
    if name not in CORRUPTIONS:
        raise ValueError(f"name: unknown corruption {name!r}; built in: {sorted(CORRUPTIONS)}")
    fn = CORRUPTIONS[name]
    return fn(x, severity, generator) if name in NOISY else fn(x, severity)


__all__ = ["CORRUPTIONS", "SEVERITY", "corrupt", *CORRUPTIONS]
