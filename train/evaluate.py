"""Evaluation: clean accuracy, CIFAR-10-C accuracy per corruption x severity,
means over the 15 benchmark / all 19 corruptions, and mCE both ways."""
from __future__ import annotations

import numpy as np
import torch

from fastfreq._progress import progress as progress_bar

from .data import ALL_19, BENCHMARK_15, CIFAR_MEAN, CIFAR_STD


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
             device="cpu", mean=CIFAR_MEAN, std=CIFAR_STD, amp_dtype=None) -> float:
    """Top-1 accuracy (%) of ``model`` on uint8 images ``(N, 3, H, W)``."""
    model.eval()
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for i in range(0, len(images), batch_size):
        x = (images[i:i + batch_size].to(device).float() / 255 - m) / s
        with torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype,
                            enabled=amp_dtype is not None):
            pred = model(x).argmax(1)
        correct += (pred == labels[i:i + batch_size].to(device)).sum()
    return 100.0 * correct.item() / max(len(images), 1)


def corruption_accuracy(model, cset, names, *, device="cpu", batch_size: int = 500, amp_dtype=None,
                        progress: bool = False) -> dict:
    """``{corruption: [acc at severity 1..5]}`` on a CIFAR10C folder."""
    names = list(names)
    it = [(n, s) for n in names for s in range(1, 6)]
    if progress:
        it = progress_bar(it, desc="CIFAR-10-C", unit="set", leave=False, mininterval=1.0)
    out = {n: [0.0] * 5 for n in names}
    for n, s in it:
        x, y = cset.severity(n, s)
        out[n][s - 1] = accuracy(model, x, y, batch_size=batch_size, device=device, amp_dtype=amp_dtype)
    return out


def summarise(per_corruption: dict) -> dict:
    """Means over the 15 benchmark corruptions and over all 19 (each only when
    all of its corruptions were evaluated), and over whatever was evaluated;
    unnormalised mCE = mean error (100 - accuracy) over the same sets."""
    out = {"n_corruptions": len(per_corruption)}
    sets = {"all": tuple(per_corruption)}
    if set(BENCHMARK_15) <= set(per_corruption):
        sets["15"] = BENCHMARK_15
    if set(ALL_19) <= set(per_corruption):
        sets["19"] = ALL_19
    for key, names in sets.items():
        acc = float(np.mean([np.mean(per_corruption[n]) for n in names]))
        out[f"rob_{key}"] = acc
        out[f"mce_unnorm_{key}"] = 100.0 - acc
    return out


def relative_mce(per_corruption: dict, baseline: dict, names=None) -> float:
    """Hendrycks & Dietterich's mCE relative to a baseline run (baseline = 100):
    per corruption, the summed error over severities divided by the baseline's,
    averaged over corruptions, times 100."""
    names = [n for n in (names or per_corruption) if n in baseline]
    if not names:
        raise ValueError("baseline: shares no corruption with this run")
    ce = [sum(100 - a for a in per_corruption[n]) / max(sum(100 - a for a in baseline[n]), 1e-9)
          for n in names]
    return 100.0 * float(np.mean(ce))
