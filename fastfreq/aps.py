"""Attended Power Suppression (Section 3.2): channel attention, auxiliary labels
(eqs. 6-9) and the auxiliary loss (eq. 10).

Typical use in a training step::

    ps = PowerSuppression(p=1/3)
    att = ChannelAttention(64)               # after the first conv (+BN)
    labels = AuxLabels("learnable")          # or "LMH=000" ... "LMH=111"
    x = ps(images)                           # the module keeps its draw: ps.last_params
    logits = model(x)                        # model calls att(...) inside
    params = ps.last_params
    beta = labels(params["band"], params["alpha"])
    loss = ce(logits, y) + aux_loss(att.open_ratio, beta, params["applied"], lam=100)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import _checks as chk
from .backends import bad_images


class ChannelAttention(nn.Module):
    """Global average pool -> FC -> ReLU -> FC -> sigmoid; the soft mask ``v``
    (one value per channel, in (0, 1)) multiplies the feature map.

    After a forward, ``mask`` holds ``v`` ``(B, C)`` and ``open_ratio`` its
    per-sample mean ``v_bar`` ``(B,)``, the quantity eq. 10 constrains.

    Args:
        channels: channels ``C`` of the feature map (the first block's output).
        hidden: width of the hidden FC layer.

    Shape:
        - Input: ``(B, C, H, W)`` feature map.
        - Output: ``(B, C, H, W)``, the input times the mask; ``mask``
          ``(B, C)``, ``open_ratio`` ``(B,)``.

    Example:
        >>> import torch
        >>> from fastfreq.aps import ChannelAttention
        >>> _ = torch.manual_seed(0)
        >>> att = ChannelAttention(16, hidden=32)
        >>> m = torch.rand(4, 16, 10, 10)
        >>> out = att(m)
        >>> out.shape, att.mask.shape, att.open_ratio.shape
        (torch.Size([4, 16, 10, 10]), torch.Size([4, 16]), torch.Size([4]))
        >>> torch.allclose(out, m * att.mask[:, :, None, None])
        True
        >>> bool(((att.mask > 0) & (att.mask < 1)).all())
        True
        >>> torch.allclose(att.open_ratio, att.mask.mean(1))
        True
    """

    def __init__(self, channels: int, hidden: int = 512):
        super().__init__()
        for name, v in (("channels", channels), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        self.channels = channels
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.mask: torch.Tensor | None = None

    def __getstate__(self):
        # the last forward's mask holds the autograd graph of that step: it is
        # not part of the module (deepcopy, AveragedModel and pickling skip it)
        state = self.__dict__.copy()
        state["mask"] = None
        return state

    def _check(self, m):
        if not isinstance(m, torch.Tensor) or not m.is_floating_point():
            what = m.dtype if isinstance(m, torch.Tensor) else type(m).__name__
            raise TypeError(f"m: expected a floating-point (B, {self.channels}, H, W) feature map "
                            f"tensor, got {what}")
        if m.dim() != 4 or m.shape[1] != self.channels:
            raise ValueError(f"m: expected a (B, {self.channels}, H, W) feature map, got "
                             f"{tuple(m.shape)}")
        if m.shape[2] * m.shape[3] == 0:  # the pooled mean would be NaN
            raise ValueError(f"m: expected a feature map with H, W >= 1 (the mask pools over "
                             f"them), got {tuple(m.shape)}")

    def soft_mask(self, pooled_from: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled_from.mean(dim=(2, 3))))))

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        self._check(m)
        self.mask = self.soft_mask(m)
        return m * self.mask[:, :, None, None].to(m.dtype)

    @property
    def open_ratio(self) -> torch.Tensor:
        """``v_bar``: mean of the soft mask per sample, from the last forward."""
        if self.mask is None:
            raise RuntimeError("open_ratio: run a forward pass first")
        return self.mask.float().mean(dim=1)

    def take_open_ratio(self) -> torch.Tensor:
        """``open_ratio``, after which the module keeps its mask detached, so
        that no autograd graph outlives the step on the module. A step
        compiled with ``torch.compile(fullgraph=True)`` that calls
        ``backward()`` needs it (Dynamo refuses a backward through a graph
        that a module attribute still holds); eagerly it frees the graph a
        step earlier."""
        ratio = self.open_ratio
        self.mask = self.mask.detach()
        return ratio


class ExtendedChannelAttention(ChannelAttention):
    """The extended module of Section 3.3 (used with NFD): a 3x3 convolution and
    batch norm before the pooling. The mask is computed from the conv+BN
    features and applied to the input feature map (docs/paper-notes.md).

    Args:
        channels: channels ``C`` of the feature map (the first block's output).
        hidden: width of the hidden FC layer.

    Shape:
        - Input: ``(B, C, H, W)`` feature map.
        - Output: ``(B, C, H, W)``, the input times the mask; ``mask``
          ``(B, C)``, ``open_ratio`` ``(B,)``.

    Example:
        >>> import torch
        >>> from fastfreq.aps import ChannelAttention, ExtendedChannelAttention
        >>> _ = torch.manual_seed(0)
        >>> att = ExtendedChannelAttention(16, hidden=32)
        >>> m = torch.rand(4, 16, 10, 10)
        >>> out = att(m)
        >>> out.shape, att.open_ratio.shape
        (torch.Size([4, 16, 10, 10]), torch.Size([4]))
        >>> # the mask comes from the conv + BN features, not from m itself
        >>> v = ChannelAttention.soft_mask(att, att.bn(att.conv(m)))
        >>> torch.allclose(att.mask, v), torch.allclose(out, m * v[:, :, None, None])
        (True, True)
    """

    def __init__(self, channels: int, hidden: int = 512):
        super().__init__(channels, hidden)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        self._check(m)
        self.mask = self.soft_mask(self.bn(self.conv(m)))
        return m * self.mask[:, :, None, None].to(m.dtype)


_SIGMOID_4 = 1 / (1 + math.exp(-4))


def beta_0(alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 6 on the kept fraction ``kappa = 1 - alpha``."""
    kappa = 1 - alpha
    return torch.sigmoid(7 * kappa - 3) + (1 - _SIGMOID_4)


class AuxLabels(nn.Module):
    """Auxiliary label generator for a configuration ``"LMH=abc"`` (``0`` ->
    ``beta_0``, ``1`` -> ``beta_1 = 1`` for band L, M, H) or ``"learnable"``
    (eq. 8, with the parameter ``theta`` of eq. 9 trained with the model).

    Args:
        config: ``"learnable"`` or ``"LMH=abc"`` with ``a, b, c`` in {0, 1}.

    Shape:
        - Input: ``band`` ``(B,)`` integer ids in {0, 1, 2} and ``alpha``
          ``(B,)`` suppression ratios in [0, 1] (``PowerSuppression``'s
          ``last_params``).
        - Output: ``(B,)`` float32 labels ``beta``.

    Example:
        >>> import torch
        >>> from fastfreq.aps import AuxLabels
        >>> band, alpha = torch.tensor([0, 1, 2, 0]), torch.tensor([0.5, 0.5, 1.0, 0.0])
        >>> AuxLabels("LMH=011")(band, alpha)      # beta_0 for L, 1 for M and H
        tensor([0.6404, 1.0000, 1.0000, 1.0000])
        >>> learnable = AuxLabels("learnable")     # theta = 0: b = 1.1 / 3 for every band
        >>> learnable(band, alpha).detach()
        tensor([0.6833, 0.6833, 0.3667, 1.0000])
        >>> [p.shape for p in learnable.parameters()]
        [torch.Size([3])]
    """

    def __init__(self, config: str = "learnable"):
        super().__init__()
        kinds = chk.label_config(config)
        self.config = config
        self.learnable = kinds == "learnable"
        if self.learnable:
            self.theta = nn.Parameter(torch.zeros(3))
        else:
            self.register_buffer("fully_open", torch.tensor(kinds, dtype=torch.bool), persistent=False)

    def basic_open_ratios(self) -> torch.Tensor:
        """Eq. 9: ``b = 1.1 sigmoid(theta) / sum(sigmoid(theta))``."""
        if not self.learnable:
            raise RuntimeError(f"basic_open_ratios: config {self.config!r} has no theta")
        s = torch.sigmoid(self.theta)
        return 1.1 * s / s.sum()

    def forward(self, band: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Labels ``beta`` ``(B,)`` for band ids ``(B,)`` in {0, 1, 2} and
        suppression ratios ``(B,)`` in [0, 1].

        Out-of-range values raise on CPU tensors; on a GPU (no host sync per
        training step) and inside ``torch.compile`` their labels are NaN,
        which the trainer's NaN check reports; a band id is never wrapped
        around (-1 used to mean band 2)."""
        for name, t in (("band", band), ("alpha", alpha)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        if band.shape != alpha.shape or band.dim() != 1:
            raise ValueError(f"band, alpha: expected two (B,) tensors, got {tuple(band.shape)} "
                             f"and {tuple(alpha.shape)}")
        if band.is_floating_point() or band.is_complex() or band.dtype == torch.bool:
            raise TypeError(f"band: expected integer band ids, got {band.dtype}")
        if not alpha.is_floating_point():
            raise TypeError(f"alpha: expected floating suppression ratios, got {alpha.dtype}")
        alpha = alpha.float()
        bad = bad_images(band, alpha, None)  # the backends' out-of-range rule
        # the check reads the values on the host: not on a GPU (a sync per
        # step) and not inside torch.compile (a data-dependent branch)
        if band.device.type == "cpu" and not torch.compiler.is_compiling() and bool(bad.any()):
            raise ValueError(f"band, alpha: expected band ids in {{0, 1, 2}} and alpha in [0, 1], got "
                             f"band {band[bad].tolist()[:5]}, alpha {alpha[bad].tolist()[:5]}")
        band = torch.where(bad, 0, band)
        if self.learnable:
            kappa = 1 - alpha
            beta = (1 - kappa) * self.basic_open_ratios()[band] + kappa
        else:
            beta = torch.where(self.fully_open.to(band.device)[band], torch.ones_like(alpha),
                               beta_0(alpha))
        return torch.where(bad, float("nan"), beta)


def aux_loss(open_ratio: torch.Tensor, beta: torch.Tensor, labelled: torch.Tensor,
             lam: float = 100.0) -> torch.Tensor:
    """Eq. 10 averaged over the labelled (power-suppressed) samples:
    ``lam * mean_labelled (v_bar - beta)^2``; 0 when none is labelled. No host
    sync (the count is clamped rather than tested). ``labelled`` is a bool
    mask (weights such as -1 or 0.5 are refused); unlabelled samples do not
    enter the loss at all, whatever their values (a NaN there is ignored).

    Args:
        open_ratio: ``ChannelAttention.open_ratio``, ``v_bar``.
        beta: ``AuxLabels``' labels.
        labelled: which samples were power-suppressed (``last_params["applied"]``).
        lam: the loss weight ``lambda`` (the paper's 100).

    Shape:
        - Input: three ``(B,)`` tensors.
        - Output: a scalar.

    Example:
        >>> import torch
        >>> from fastfreq.aps import aux_loss
        >>> v_bar = torch.tensor([0.5, 0.9, 0.2])
        >>> beta = torch.tensor([0.7, 1.0, float("nan")])
        >>> labelled = torch.tensor([True, True, False])
        >>> aux_loss(v_bar, beta, labelled, lam=100)    # 100 * (0.2^2 + 0.1^2) / 2
        tensor(2.5000)
        >>> aux_loss(v_bar, beta, torch.zeros(3, dtype=torch.bool))
        tensor(0.)
    """
    lam = chk.nonneg_float(lam, "lam")
    for name, t in (("open_ratio", open_ratio), ("beta", beta), ("labelled", labelled)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    if not (open_ratio.shape == beta.shape == labelled.shape) or open_ratio.dim() != 1:
        raise ValueError(f"open_ratio, beta, labelled: expected three (B,) tensors, got "
                         f"{tuple(open_ratio.shape)}, {tuple(beta.shape)}, {tuple(labelled.shape)}")
    if labelled.dtype != torch.bool:
        raise TypeError(f"labelled: expected a bool tensor (which samples were power-suppressed), "
                        f"got {labelled.dtype}")
    sq = (open_ratio - beta.to(open_ratio.dtype)) ** 2
    sq = torch.where(labelled, sq, torch.zeros_like(sq))
    return lam * sq.sum() / labelled.sum().clamp_min(1).to(sq.dtype)
