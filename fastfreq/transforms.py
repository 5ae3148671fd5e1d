"""Batched augmentation modules in the kornia / torchvision-v2 manner.

Each module samples parameters per sample, then applies them with one call of
the fused op, and returns what it was given: a tensor for a tensor, and for a
tuple / list / dict (e.g. ``(image, label)``) the same structure with its
image transformed. The parameters of the last call are kept on the module
(``last_params``, kornia's ``_params``); ``module(x, params=p)`` replays an
augmentation exactly (the NFD noise is keyed by a Philox seed, so a replay
adds the same noise on every backend).

* images: ``(B, C, H, W)`` batches or single ``(C, H, W)`` images, float16 /
  bfloat16 / float32 / float64 in [0, 1] (not required), or uint8 in 0..255
  (computed in float32, rounded and clamped back to uint8);
* which entry of a structure is the image: every ``torchvision.tv_tensors.Image``
  if there is one, else the first plain tensor with 3 or 4 dimensions
  (torchvision's rule); labels and other entries pass through unchanged;
* a forward is one call of ``fastfreq.spectral_augment_sampled``: the module
  draws one Philox key on the device and the op draws every image's
  parameters from it (``p`` included), applies them and returns the rows
  that ``last_params`` is built from when read (no host sync);
  ``same_on_batch`` draws one set for the whole batch, ``clamp`` clips the
  output to ``(lo, hi)`` (``True``: ``(0, 1)``);
* a replayed ``params`` is checked as the functional API checks its
  arguments (keys, shapes, dtypes, devices, value ranges); the value check
  is one reduction, free on CPU tensors and one host sync per replayed call
  on a GPU; the module's own last draw, unmodified, is not re-checked (so
  ``fastfreq.tv.V2``'s draw-then-apply has no sync);
* ``generator`` makes the draws reproducible; inside a DataLoader worker each
  worker draws from its own stream, derived from the generator's state and
  the worker's seed (distinct per worker and per epoch, reproducible when
  the DataLoader is seeded). Processes are not told apart: the ranks of a
  DDP job that build the module with the same seeded generator draw the
  same parameters, so seed it per rank (e.g. ``manual_seed(seed + rank)``).
  Inside ``torch.compile`` use no generator (Dynamo cannot trace one): the
  draws then come from the global RNG (``torch.manual_seed``);
* augmentation in a Dataset (per image, in the workers): return
  ``module.last_params`` with the image and pass the collated params
  through ``batch_params`` to get the batch layout that ``AuxLabels`` takes.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Sequence

import torch
from torch import nn
from torch.utils import _pytree

from . import _checks as chk
from . import functional as FF
from .backends import draw_seed
from .constants import PAPER_BANDS
from .philox import PARAM_HEAD, DrawSettings


def sample_control_weights(batch: int, n_bands: int = 5, *, generator=None, device=None,
                           dtype=torch.float32) -> torch.Tensor:
    """NFD control weights ``alpha_r`` ``(batch, n_bands)`` (Section 3.3): one
    entry per row, chosen uniformly, is ``U(0, 1)``; the others are 0 or 1 with
    probability 1/2."""
    if not isinstance(n_bands, int) or n_bands < 1:
        raise ValueError(f"n_bands: expected a positive int, got {n_bands!r}")
    dev = generator.device if generator is not None else device
    w = torch.randint(0, 2, (batch, n_bands), generator=generator, device=dev).to(dtype)
    pick = torch.randint(0, n_bands, (batch,), generator=generator, device=dev)
    u = torch.rand(batch, generator=generator, device=dev, dtype=dtype)
    w.scatter_(1, pick[:, None], u[:, None])
    return w.to(device) if device is not None else w


def split_rows(rows: torch.Tensor, seed: torch.Tensor) -> dict:
    """The rows of an in-op draw (``fastfreq.spectral_augment_sampled``) as
    the modules' params: ``{"ps": {applied, band, alpha}, "nfd": {applied,
    alpha_r, seed}}`` (``PowerSuppression`` keeps ``"ps"``, ``NFD`` ``"nfd"``).

    Example:
        >>> import torch, fastfreq
        >>> from fastfreq.transforms import split_rows
        >>> x = torch.rand(4, 3, 40, 40)
        >>> _, rows = fastfreq.spectral_augment_sampled(x, seed=1)
        >>> p = split_rows(rows, torch.tensor([1]))
        >>> {k: sorted(v) for k, v in p.items()}
        {'ps': ['alpha', 'applied', 'band'], 'nfd': ['alpha_r', 'applied', 'seed']}
    """
    return {"ps": {"applied": rows[:, 0].to(torch.bool), "band": rows[:, 1].to(torch.int64),
                   "alpha": rows[:, 2]},
            "nfd": {"applied": rows[:, 3].to(torch.bool), "alpha_r": rows[:, PARAM_HEAD:],
                    "seed": seed.reshape(1)}}


def batch_params(collated: dict) -> dict:
    """The draws of single images, as a DataLoader collated them, in the
    batch layout that ``AuxLabels`` and ``aux_loss`` take.

    A module called on one ``(C, H, W)`` image keeps ``(1, ...)``-shaped
    params; ``default_collate`` stacks B of them to ``(B, 1, ...)``. This
    drops that axis from every entry (nested dicts such as
    ``SpectralAugment``'s ``{"ps": ..., "nfd": ...}`` included), so
    ``band``, ``alpha`` and ``applied`` become ``(B,)``. The NFD ``seed``
    becomes ``(B,)`` too: one key per image (each was drawn with its own),
    not a key that replays the whole batch.

    Args:
        collated: the collated ``last_params`` of single images (a dict of
            ``(B, 1, ...)`` tensors, possibly nested).

    Shape:
        - Input: every entry ``(B, 1, ...)``.
        - Output: the same dict with every entry ``(B, ...)``.

    Example:
        >>> import torch
        >>> from torch.utils.data import default_collate
        >>> from fastfreq import PowerSuppression, batch_params
        >>> _ = torch.manual_seed(0)
        >>> aug = PowerSuppression(p=0.5)
        >>> draws = []
        >>> for image in torch.rand(4, 3, 40, 40):    # as a Dataset's __getitem__ would
        ...     _ = aug(image)
        ...     draws.append(aug.last_params)
        >>> collated = default_collate(draws)
        >>> collated["band"].shape
        torch.Size([4, 1])
        >>> {k: tuple(v.shape) for k, v in batch_params(collated).items()}
        {'applied': (4,), 'band': (4,), 'alpha': (4,)}
    """
    if not isinstance(collated, dict):
        raise TypeError(f"collated: expected the dict of params a DataLoader collated, got "
                        f"{type(collated).__name__}")
    out = {}
    for key, v in collated.items():
        if isinstance(v, dict):
            out[key] = batch_params(v)
        elif isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[1] == 1:
            out[key] = v.squeeze(1)
        else:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"collated[{key!r}]: expected a (B, 1, ...) tensor (the params of "
                             f"single images stacked by a DataLoader), got {shape}")
    return out


@functools.lru_cache(maxsize=64)
def _equal_coverage(H: int, W: int, n: int):
    from .bands import equal_coverage_bands

    return equal_coverage_bands(H, W, n)


def resolve_nfd_bands(bands, H: int, W: int):
    """``"paper"`` -> the paper's five 40x40 bands; ``"equal-coverage"`` ->
    five bands of equal information coverage for this size (computed once per
    size); else explicit ``(a, b)`` edges."""
    if isinstance(bands, str):
        if bands == "paper":
            return PAPER_BANDS
        if bands == "equal-coverage":
            return _equal_coverage(int(H), int(W), 5)
        raise ValueError(f"bands: expected 'paper', 'equal-coverage' or (a, b) pairs, got {bands!r}")
    return chk.nfd_bands(bands)


# ------------------------------------------------------------------ structures
def _is_tv_tensor(t) -> bool:
    return type(t).__module__.startswith("torchvision.tv_tensors")


def _is_tv_image(t) -> bool:
    return _is_tv_tensor(t) and type(t).__name__ == "Image"


def _image_slots(leaves) -> list[int]:
    """Indices of the leaves to transform (torchvision v2's rule)."""
    images = [i for i, v in enumerate(leaves) if _is_tv_image(v)]
    if images:
        return images
    for i, v in enumerate(leaves):
        if isinstance(v, torch.Tensor) and v.dim() in (3, 4) and not _is_tv_tensor(v):
            return [i]
    return []


def _to_compute(x: torch.Tensor):
    """(float images, a function that brings a result back to x's dtype/type)."""
    kind = type(x)
    plain = x.as_subclass(torch.Tensor) if kind is not torch.Tensor else x
    if plain.dtype == torch.uint8:
        def back(y):
            y = (y * 255).round_().clamp_(0, 255).to(torch.uint8)
            return y.as_subclass(kind) if kind is not torch.Tensor else y
        return plain.float() / 255, back
    if not plain.is_floating_point():
        raise TypeError(f"x: expected floating-point or uint8 images, got {plain.dtype}")
    if kind is torch.Tensor:
        return plain, lambda y: y
    return plain, lambda y: y.as_subclass(kind)


def _batched(x: torch.Tensor):
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"x: expected (B, C, H, W) or (C, H, W) images, got {tuple(x.shape)}")
    return x, False


def _clamp_arg(clamp):
    if clamp is False or clamp is None:
        return None
    if clamp is True:
        return (0.0, 1.0)
    if isinstance(clamp, (str, bytes)) or not hasattr(clamp, "__len__") or len(clamp) != 2:
        raise TypeError(f"clamp: expected a bool or a (lo, hi) pair, got {clamp!r}")
    lo, hi = (chk.finite_float(v, "clamp") for v in clamp)
    if not lo < hi:
        raise ValueError(f"clamp: expected lo < hi, got {clamp!r}")
    return (lo, hi)


def _param_dict(params, keys, where: str):
    """``params`` as a mapping holding ``keys``; the error names what is missing."""
    expected = ", ".join(repr(k) for k in keys)
    if not isinstance(params, Mapping):
        raise TypeError(f"{where}: expected a dict with the keys {expected} (as in last_params), "
                        f"got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}; expected the keys {expected} "
                         "(as in last_params)")
    return params


_KINDS = {"bool": "a bool", "int": "an integer", "float": "a floating-point"}


def _param_tensor(params, key, where: str, shape, kind: str, device) -> torch.Tensor:
    """``params[key]`` checked for type, device, shape and dtype kind."""
    t, name = params[key], f"{where}[{key!r}]"
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected {_KINDS[kind]} tensor of shape {shape}, got "
                        f"{type(t).__name__}")
    if t.device != device:
        raise ValueError(f"{name}: is on {t.device} but x is on {device}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    ok = {"bool": t.dtype == torch.bool,
          "int": not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool),
          "float": t.is_floating_point()}[kind]
    if not ok:
        raise TypeError(f"{name}: expected {_KINDS[kind]} tensor, got {t.dtype}")
    return t


def _outside_unit(t: torch.Tensor) -> torch.Tensor:
    """Elements outside [0, 1], NaN included."""
    return ~((t >= 0) & (t <= 1))


def _refuse_bad_values(checks) -> None:
    """``checks``: ``(name, tensor, bad mask, expectation)``. The masks are
    reduced into one flag that is read once (the one host sync on a GPU); the
    message, on the error path only, reads the offending values."""
    if not checks or torch._C._are_functorch_transforms_active():  # vmap cannot read values
        return
    if torch.compiler.is_compiling():  # no host read inside a graph: the functional API's rule
        for name, _, bad, want in checks:
            FF._in_graph_check(~bad.any(), f"{name}: expected {want}")
        return
    flags = torch.stack([bad.any() for _, _, bad, _ in checks])
    if not bool(flags.any()):
        return
    for (name, t, bad, want), f in zip(checks, flags.tolist()):
        if f:
            raise ValueError(f"{name}: expected {want}, got {t[bad].tolist()[:5]}")


class _Sampled(nn.Module):
    """What every module shares: the generator and its per-worker streams,
    structure handling, the last parameters and ``clamp``."""

    def __init__(self, generator, backend: str, clamp):
        super().__init__()
        self.generator = chk.generator(generator)
        self.backend = chk.backend_name(backend)
        self.clamp = _clamp_arg(clamp)
        self._params = None
        self._pending = None  # (rows, seed) of an in-op draw, turned into params when read
        self._last_draw = None  # see _drawn
        self._worker_stream = None  # (worker key, generator) inside a DataLoader worker

    @property
    def last_params(self):
        """The parameters of the last forward (``None`` before the first).
        After an in-op draw they are built from its rows when first read, so
        a forward whose parameters nobody reads runs no op to split them."""
        if self._pending is not None:
            rows, seed = self._pending
            self._pending = None
            self._params = self._drawn(self.params_from_rows(rows, seed))
        return self._params

    # ---- in-op draws (fastfreq.spectral_augment_sampled)
    def draw_settings(self, size) -> tuple:
        """``(DrawSettings, sigma, radius_scale, nfd_bands)`` of this module
        for images of ``size``."""
        raise NotImplementedError

    def params_from_rows(self, rows: torch.Tensor, seed: torch.Tensor) -> dict:
        """The ``last_params`` dict of drawn rows (split_rows)."""
        raise NotImplementedError

    def _sampled(self, x4: torch.Tensor, seed: torch.Tensor):
        s, sigma, radius_scale, bands = self.draw_settings(tuple(x4.shape[-2:]))
        return FF.spectral_augment_sampled(
            x4, seed, ps_p=s.ps_p, bands=s.ps_bands, alpha=s.alpha, nfd_p=s.nfd_p, sigma=sigma,
            radius_scale=radius_scale, nfd_bands=bands, same_on_batch=s.same_on_batch,
            backend=self.backend, check_values=False)

    def sample_params(self, batch: int, device="cpu", size: tuple[int, int] = (40, 40),
                      generator=None) -> dict:
        """Draw the parameters of ``batch`` images of ``size`` on ``device``
        without applying them (``generator`` overrides the module's for this
        draw): the same draw as a forward from the same generator state."""
        g = self._gen(generator)
        seed = draw_seed(torch.device(device), g)
        s = self.draw_settings(tuple(size))[0]
        rows = FF._draw_rows("auto", seed, batch, s)
        return self._drawn(self.params_from_rows(rows, seed))

    def stream(self) -> torch.Generator | None:
        """The generator to draw from: ``generator`` itself in the main
        process; in a DataLoader worker a generator of its own, seeded from
        ``generator``'s current state and the worker's seed."""
        g = self.generator
        # get_worker_info() is a lookup Dynamo refuses to trace; a compiled
        # step runs in the main process, where it would answer None anyway
        if g is None or torch.compiler.is_compiling():
            return g
        info = torch.utils.data.get_worker_info()
        if info is None:
            return g
        key = (info.id, info.seed)
        if self._worker_stream is None or self._worker_stream[0] != key:
            probe = torch.Generator(device=g.device)
            probe.set_state(g.get_state())  # read the state, do not advance it
            base = int(torch.randint(0, 2 ** 62, (1,), generator=probe, device=g.device).item())
            wg = torch.Generator(device=g.device)
            wg.manual_seed(hash((base, info.seed)) % (2 ** 63))
            self._worker_stream = (key, wg)
        return self._worker_stream[1]

    def forward(self, *inputs, params=None, generator=None):
        """Transform the images in ``inputs`` (a tensor or a structure holding
        one); returns the same structure. ``params`` replays a previous draw;
        ``generator`` draws this call from another generator than the
        module's (as ``sample_params(..., generator=g)`` then a replay would,
        in one op call)."""
        sample = inputs if len(inputs) > 1 else inputs[0] if inputs else None
        if sample is None:
            raise TypeError("x: expected images (a tensor or a structure holding one), got nothing")
        leaves, spec = _pytree.tree_flatten(sample)
        # a lone tensor is the image whatever its shape (a wrong one is reported below)
        slots = [0] if isinstance(sample, torch.Tensor) else _image_slots(leaves)
        if not slots:
            raise TypeError(f"x: expected a (B, C, H, W) or (C, H, W) tensor of images, or a "
                            f"structure holding one, got {type(sample).__name__}")
        replayed = params is not None
        pending = None
        for i in slots:
            x, back = _to_compute(leaves[i])
            chk.real_device(x.device, "x")
            x4, single = _batched(x)
            if params is None and pending is None:
                # the draw and the augmentation in one op call, no host sync
                seed = draw_seed(x4.device, self._gen(generator))
                out, rows = self._sampled(x4, seed)
                pending = (rows, seed)
            else:
                if params is None:  # a second image of a structure: the same draw
                    params = self._drawn(self.params_from_rows(*pending))
                elif replayed:
                    checks = self.check_params(params, x4)
                    # in a graph the checks read nothing on the host: no need to
                    # recognise the module's own draw (identity is not traceable)
                    if torch.compiler.is_compiling() or not self._own_draw(params):
                        _refuse_bad_values(checks)
                out = self.apply_params(x4, params)
            if self.clamp is not None:
                out = out.clamp(*self.clamp)
            leaves[i] = back(out[0] if single else out)
        self._params, self._pending = (params, None) if params is not None else (None, pending)
        return _pytree.tree_unflatten(leaves, spec)

    def _drawn(self, params: dict) -> dict:
        """Remember ``params`` as this module's own (valid) draw: the tensors
        and their version counters, which any in-place edit bumps."""
        leaves = [t for t in _pytree.tree_leaves(params) if isinstance(t, torch.Tensor)]
        self._last_draw = (leaves, [t._version for t in leaves])
        return params

    def _own_draw(self, params) -> bool:
        """Whether ``params`` is this module's last draw, unmodified (its values
        need no check, and checking them would cost a host sync on a GPU)."""
        last = self._last_draw
        if last is None:
            return False
        leaves = [t for t in _pytree.tree_leaves(params) if isinstance(t, torch.Tensor)]
        return len(leaves) == len(last[0]) and all(
            a is b and a._version == v for a, b, v in zip(leaves, *last))

    def _gen(self, generator):
        """The generator of one draw: ``generator`` when given, else ``stream()``."""
        return chk.generator(generator) if generator is not None else self.stream()

    def _settings(self) -> str:
        gen = "None" if self.generator is None else f"Generator({self.generator.device})"
        clamp = False if self.clamp is None else self.clamp
        return f"clamp={clamp}, backend={self.backend!r}, generator={gen}"


class _Augment(_Sampled):
    def __init__(self, p: float, same_on_batch: bool, generator, backend: str, clamp):
        super().__init__(generator, backend, clamp)
        self.p = chk.probability(p, "p")
        self.same_on_batch = bool(same_on_batch)


class PowerSuppression(_Augment):
    """Power suppression (eq. 5) with probability ``p`` per sample; the band is
    uniform over ``bands`` and ``alpha ~ U(alpha[0], alpha[1])``.

    Each augmented image is ``F^-1(F(x) * (1 - alpha (1 - M_band)))``: the
    power of one band (low, middle or high frequencies) is scaled down by
    ``alpha``. ``last_params`` after a call (and ``params`` to replay one):
    ``applied`` (bool), ``band`` (int64 id in {0, 1, 2}) and ``alpha``
    (float; 0 where not applied), each ``(B,)``: what the APS labels
    (``fastfreq.aps.AuxLabels``) are built from.

    Args:
        p: probability that an image is augmented.
        bands: the bands to draw from, uniformly (``"L"``, ``"M"``, ``"H"``).
        alpha: range of the suppression ratio, ``0 <= lo <= hi <= 1``.
        radius_scale: scales the bands' radii, set for 40x40 images (use
            ``side / 40`` on other sizes; a ``SizeWarning`` says so).
        same_on_batch: one draw for the whole batch.
        generator: a ``torch.Generator`` for reproducible draws (each
            DataLoader worker gets a stream of its own); None: the global RNG.
        backend: one of ``fastfreq.BACKENDS`` (``"auto"`` by default; see
            ``fastfreq.spectral_augment``).
        clamp: clip the output to ``(0, 1)`` (``True``) or to a ``(lo, hi)``.

    Shape:
        - Input: ``(B, C, H, W)`` or ``(C, H, W)``, float or uint8, or a
          tuple / list / dict holding such an image (labels pass through).
        - Output: the input's structure; the image keeps its shape, dtype,
          device and memory format (channels_last stays channels_last).

    Example:
        >>> import torch
        >>> from fastfreq import PowerSuppression
        >>> from fastfreq.masks import suppression_gain
        >>> _ = torch.manual_seed(0)
        >>> aug = PowerSuppression(p=1.0, alpha=(0.5, 1.0))
        >>> x = torch.rand(8, 3, 40, 40)
        >>> y = aug(x)
        >>> y.shape, y.dtype
        (torch.Size([8, 3, 40, 40]), torch.float32)
        >>> p = aug.last_params
        >>> {k: (tuple(v.shape), v.dtype) for k, v in p.items()}
        {'applied': ((8,), torch.bool), 'band': ((8,), torch.int64), 'alpha': ((8,), torch.float32)}
        >>> g = suppression_gain(p["band"], p["alpha"], 40, 40)    # eq. 5 gain, (8, 40, 21)
        >>> err = torch.fft.rfft2(y) - torch.fft.rfft2(x) * g[:, None]
        >>> bool(err.abs().max() < 1e-3)
        True
        >>> torch.equal(aug(x, params=p), y)                          # a replay
        True
        >>> u8 = aug((x * 255).to(torch.uint8))                     # uint8 in, uint8 out
        >>> u8.dtype, u8.shape
        (torch.uint8, torch.Size([8, 3, 40, 40]))
    """

    def __init__(self, p: float = 1 / 3, bands: Sequence[str] = ("L", "M", "H"),
                 alpha: tuple[float, float] = (0.0, 1.0), radius_scale: float = 1.0, *,
                 same_on_batch: bool = False, generator=None, backend: str = "auto", clamp=False):
        super().__init__(p, same_on_batch, generator, backend, clamp)
        if isinstance(bands, str) or not isinstance(bands, Sequence) or not len(bands):
            raise ValueError(f"bands: expected a non-empty sequence of 'L', 'M', 'H', got {bands!r}")
        self.band_ids = [chk.band_id(b) for b in bands]
        self.alpha_range = chk.unit_range(alpha, "alpha")
        self.radius_scale = chk.radius_scale(radius_scale)

    def extra_repr(self) -> str:
        names = tuple("LMH"[b] for b in self.band_ids)
        return (f"p={self.p}, bands={names}, alpha={self.alpha_range}, "
                f"radius_scale={self.radius_scale}, same_on_batch={self.same_on_batch}, "
                + self._settings())

    def draw_settings(self, size) -> tuple:
        s = DrawSettings(self.p, tuple(self.band_ids), self.alpha_range, 0.0, 0, self.same_on_batch)
        return s, 0.0, self.radius_scale, None

    def params_from_rows(self, rows, seed) -> dict:
        return split_rows(rows, seed)["ps"]

    def check_params(self, params, x4, where: str = "params") -> list:
        """Refuse a replayed ``params`` of the wrong structure, shape, dtype or
        device; returns the value checks (band ids, alpha) for the caller to
        run in one reduction."""
        B, dev = x4.shape[0], x4.device
        _param_dict(params, ("applied", "band", "alpha"), where)
        _param_tensor(params, "applied", where, (B,), "bool", dev)
        band = _param_tensor(params, "band", where, (B,), "int", dev)
        alpha = _param_tensor(params, "alpha", where, (B,), "float", dev)
        return [(f"{where}['band']", band, (band < 0) | (band > 2), "band ids in {0, 1, 2}"),
                (f"{where}['alpha']", alpha, _outside_unit(alpha), "values in [0, 1]")]

    def apply_params(self, x, params):
        out = FF.power_suppress(x, params["band"], params["alpha"], radius_scale=self.radius_scale,
                                backend=self.backend, check_values=False)
        return torch.where(params["applied"][:, None, None, None], out, x)


class NFD(_Augment):
    """Noise in Frequency Domain (eq. 12) with probability ``p`` per sample.

    Each augmented image is ``F^-1(F(x) + R_sigma(M) * Dir F(x))``: Gaussian
    noise of variance ``sigma (1 - M)`` on the spectrum, where the control
    matrix ``M`` (eq. 14) mixes the NFD bands with the drawn control weights
    (Section 3.3: one band's weight ``U(0, 1)``, the others 0 or 1).
    ``last_params``: ``applied`` (bool ``(B,)``), ``alpha_r`` (``(B, n)``
    control weights) and ``seed`` (the ``(1,)`` int64 Philox key of the noise
    draw, so a replay adds the same noise on every backend).

    Args:
        sigma: noise scale ``sigma >= 0`` (eq. 11).
        p: probability that an image is augmented.
        bands: ``"paper"`` (the paper's five bands, set for 40x40 images),
            ``"equal-coverage"`` (five bands of equal information coverage
            for the image's size) or explicit ``(a, b)`` radius pairs.
        same_on_batch: one draw for the whole batch.
        generator: a ``torch.Generator`` for reproducible draws (each
            DataLoader worker gets a stream of its own); None: the global RNG.
        backend: one of ``fastfreq.BACKENDS`` (``"auto"`` by default; see
            ``fastfreq.spectral_augment``).
        clamp: clip the output to ``(0, 1)`` (``True``) or to a ``(lo, hi)``.

    Shape:
        - Input: ``(B, C, H, W)`` or ``(C, H, W)``, float or uint8, or a
          tuple / list / dict holding such an image (labels pass through).
        - Output: the input's structure; the image keeps its shape, dtype,
          device and memory format.

    Example:
        >>> import torch
        >>> from fastfreq import NFD
        >>> _ = torch.manual_seed(0)
        >>> aug = NFD(sigma=1.0)
        >>> x = torch.rand(8, 3, 40, 40)
        >>> y = aug(x)
        >>> y.shape, y.dtype
        (torch.Size([8, 3, 40, 40]), torch.float32)
        >>> {k: tuple(v.shape) for k, v in aug.last_params.items()}
        {'applied': (8,), 'alpha_r': (8, 5), 'seed': (1,)}
        >>> torch.equal(aug(x, params=aug.last_params), y)        # the same noise again
        True
        >>> bool((y - x).abs().amax() > 0.01)                     # noise was added
        True
        >>> bool((NFD(sigma=0.0)(x) - x).abs().amax() < 1e-5)     # sigma = 0: no noise
        True
    """

    def __init__(self, sigma: float = 1.0, p: float = 1.0, bands="paper", *,
                 same_on_batch: bool = False, generator=None, backend: str = "auto", clamp=False):
        super().__init__(p, same_on_batch, generator, backend, clamp)
        self.sigma = chk.sigma(sigma)
        if not isinstance(bands, str):
            bands = chk.nfd_bands(bands)
        else:
            resolve_nfd_bands(bands, 40, 40)  # validate the name now
        self.bands = bands

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, p={self.p}, bands={self.bands!r}, "
                f"same_on_batch={self.same_on_batch}, " + self._settings())

    def draw_settings(self, size) -> tuple:
        bands = resolve_nfd_bands(self.bands, *size)
        s = DrawSettings(0.0, (0,), (0.0, 1.0), self.p, len(bands), self.same_on_batch)
        return s, self.sigma, 1.0, bands

    def params_from_rows(self, rows, seed) -> dict:
        return split_rows(rows, seed)["nfd"]

    def check_params(self, params, x4, where: str = "params") -> list:
        """As ``PowerSuppression.check_params``, for ``applied``, ``alpha_r``
        (one column per NFD band of this image size) and ``seed``."""
        B, dev = x4.shape[0], x4.device
        n = len(resolve_nfd_bands(self.bands, *x4.shape[-2:]))
        _param_dict(params, ("applied", "alpha_r", "seed"), where)
        _param_tensor(params, "applied", where, (B,), "bool", dev)
        alpha_r = _param_tensor(params, "alpha_r", where, (B, n), "float", dev)
        seed = _param_tensor(params, "seed", where, (1,), "int", dev)
        if seed.dtype != torch.int64:
            raise TypeError(f"{where}['seed']: expected an int64 tensor (a Philox key), got {seed.dtype}")
        return [(f"{where}['alpha_r']", alpha_r, _outside_unit(alpha_r), "values in [0, 1]")]

    def apply_params(self, x, params):
        bands = resolve_nfd_bands(self.bands, *x.shape[-2:])
        out = FF.nfd(x, params["alpha_r"], sigma=self.sigma, nfd_bands=bands, seed=params["seed"],
                     backend=self.backend, check_values=False)
        return torch.where(params["applied"][:, None, None, None], out, x)


class SpectralAugment(_Sampled):
    """Power suppression then NFD (Section 4.2) in ONE call of the fused op.

    A forward is the in-op draw and one augmentation call, whatever ``nfd_p``
    (``fastfreq.spectral_augment_sampled``: images without NFD drawn get no
    noise). A replay with explicit params (``aug(x, params=p)``) takes a
    second, suppression-only call for the images without NFD when
    ``0 < nfd_p < 1``, with the same values. ``ps_p = 0`` or ``nfd_p = 0``
    (or ``sigma = 0``) leaves that half out.
    ``last_params`` = ``{"ps": ..., "nfd": ...}``, the params of
    ``PowerSuppression`` and ``NFD``; ``"ps"`` holds what the APS labels are
    built from.

    Args:
        ps_p, bands, alpha, radius_scale: ``PowerSuppression``'s ``p``,
            ``bands``, ``alpha`` and ``radius_scale``.
        sigma, nfd_p, nfd_bands: ``NFD``'s ``sigma``, ``p`` and ``bands``.
        same_on_batch: one draw for the whole batch.
        generator: a ``torch.Generator`` for reproducible draws of both
            halves (each DataLoader worker gets a stream of its own).
        backend: one of ``fastfreq.BACKENDS`` (``"auto"`` by default; see
            ``fastfreq.spectral_augment``).
        clamp: clip the output to ``(0, 1)`` (``True``) or to a ``(lo, hi)``.

    Shape:
        - Input: ``(B, C, H, W)`` or ``(C, H, W)``, float or uint8, or a
          tuple / list / dict holding such an image (labels pass through).
        - Output: the input's structure; the image keeps its shape, dtype,
          device and memory format.

    Example:
        >>> import torch
        >>> from fastfreq import NFD, PowerSuppression, SpectralAugment
        >>> aug = SpectralAugment(ps_p=1/3, sigma=1.0, generator=torch.Generator().manual_seed(0))
        >>> x = torch.rand(8, 3, 40, 40, generator=torch.Generator().manual_seed(1))
        >>> y, label = aug((x, 7))                                # a (image, label) pair
        >>> y.shape, label
        (torch.Size([8, 3, 40, 40]), 7)
        >>> p = aug.last_params
        >>> sorted(p), sorted(p["ps"]), sorted(p["nfd"])
        (['nfd', 'ps'], ['alpha', 'applied', 'band'], ['alpha_r', 'applied', 'seed'])
        >>> # the same as suppression then NFD, in one FFT round trip
        >>> two = NFD(sigma=1.0)(PowerSuppression()(x, params=p["ps"]), params=p["nfd"])
        >>> bool((y - two).abs().amax() < 1e-4)
        True
    """

    def __init__(self, ps_p: float = 1 / 3, bands: Sequence[str] = ("L", "M", "H"),
                 alpha: tuple[float, float] = (0.0, 1.0), radius_scale: float = 1.0,
                 sigma: float = 1.0, nfd_p: float = 1.0, nfd_bands="paper", *,
                 same_on_batch: bool = False, generator=None, backend: str = "auto", clamp=False):
        super().__init__(generator, backend, clamp)
        # the halves draw from this module's stream (one per worker), not their own
        self.ps = PowerSuppression(ps_p, bands, alpha, radius_scale, same_on_batch=same_on_batch,
                                   backend=backend)
        self.nfd = NFD(sigma, nfd_p, nfd_bands, same_on_batch=same_on_batch, backend=backend)

    def extra_repr(self) -> str:
        return self._settings()

    def draw_settings(self, size) -> tuple:
        bands = resolve_nfd_bands(self.nfd.bands, *size)
        s = DrawSettings(self.ps.p, tuple(self.ps.band_ids), self.ps.alpha_range, self.nfd.p,
                         len(bands), self.ps.same_on_batch)
        return s, self.nfd.sigma, self.ps.radius_scale, bands

    def params_from_rows(self, rows, seed) -> dict:
        return split_rows(rows, seed)

    def check_params(self, params, x4, where: str = "params") -> list:
        _param_dict(params, ("ps", "nfd"), where)
        return (self.ps.check_params(params["ps"], x4, f"{where}['ps']")
                + self.nfd.check_params(params["nfd"], x4, f"{where}['nfd']"))

    def apply_params(self, x4, params):
        ps, nf = params["ps"], params["nfd"]
        use_ps = self.ps.p > 0
        use_nfd = self.nfd.p > 0 and self.nfd.sigma > 0
        if not use_nfd:
            return self.ps.apply_params(x4, ps)
        if not use_ps:
            return self.nfd.apply_params(x4, nf)
        bands = resolve_nfd_bands(self.nfd.bands, *x4.shape[-2:])
        # alpha is 0 where suppression is not applied: the gain is then exactly 1
        out = FF.spectral_augment(x4, ps["band"], ps["alpha"], nf["alpha_r"], sigma=self.nfd.sigma,
                                  radius_scale=self.ps.radius_scale, nfd_bands=bands,
                                  seed=nf["seed"], backend=self.backend, check_values=False)
        if self.nfd.p < 1:
            ps_only = self.ps.apply_params(x4, ps)
            out = torch.where(nf["applied"][:, None, None, None], out, ps_only)
        return out
