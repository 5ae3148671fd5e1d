"""fastfreq-analyse: the frequency report of a trained run.

    fastfreq-analyse out/runs/demo-s0                  # a run folder
    fastfreq-analyse out/runs/demo-s0/checkpoint.pt --n-images 1000 --out report/
    python -m train run --preset demo --analyse        # at the end of a run

Writes under ``--out`` (default ``<run>/analysis``): the Fourier heat map of
the model on its test images (Yin et al. 2019, ``fastfreq.analysis``) with
its radial profile and L/M/H band means, the PDM histogram of the first
block with its L/M/H shares, the CIFAR-10-C accuracy per corruption when the
run's ``results.json`` has it, ``report.json`` with every number and
``report.md`` showing them together. The perturbations and the PDM probes go
through the run's input normalisation, as the training images did.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from fastfreq import analysis
from fastfreq import pdm as pdm_mod

from .config import RunConfig
from .data import CIFAR_MEAN, CIFAR_STD
from .engine import _read_checkpoint, build_net, load_test, resolve_device

#: Images of the test set used when --n-images is not given: on the 2-core
#: CPU the tiny demo model takes about 2 s per image (544 forward passes).
DEFAULT_IMAGES = {"cpu": 64, "cuda": 10000}


def find_run(path: str) -> tuple[str, str]:
    """``(checkpoint, run folder)`` for a run folder or a checkpoint file."""
    if os.path.isdir(path):
        ckpt = os.path.join(path, "checkpoint.pt")
        if not os.path.exists(ckpt):
            raise ValueError(f"run: {path} holds no checkpoint.pt (expected a run folder of "
                             "`fastfreq-train run` or a checkpoint file)")
        return ckpt, path
    if not os.path.exists(path):
        raise ValueError(f"run: {path} does not exist (expected a run folder or a checkpoint file)")
    return path, os.path.dirname(os.path.abspath(path))


def load_run(path: str, device: torch.device):
    """``(model in eval mode, RunConfig, results dict or None)``."""
    ckpt, run_dir = find_run(path)
    state = _read_checkpoint(ckpt, "cpu")
    cfg = RunConfig(**state["config"])
    net = build_net(cfg)
    net.load_state_dict(state["net"])
    results = None
    res_path = os.path.join(run_dir, "results.json")
    if os.path.exists(res_path):
        try:
            with open(res_path) as f:
                results = json.load(f)
        except (OSError, ValueError):  # a damaged results.json loses only its numbers here
            print(f"warning: {res_path} is unreadable; the report has no corruption accuracies",
                  file=sys.stderr)
    return net.model.to(device).eval(), cfg, results


def analyse_run(path: str, out: str | None = None, *, eps: float = 4.0, n_images: int | None = None,
                seed: int = 0, device: str = "auto", batch_size: int | None = None,
                memory_budget: int | None = None, data_root: str | None = None,
                progress: bool = True) -> dict:
    """The report of one run (see the module docstring); returns the paths written."""
    dev = resolve_device(device)
    model, cfg, results = load_run(path, dev)
    if data_root:
        cfg.data_root = data_root
    x, y = load_test(cfg)
    n = n_images if n_images is not None else DEFAULT_IMAGES[dev.type]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_images: expected a positive int, got {n!r}")
    x, y = x[:n], y[:n]
    normalise = analysis.Normalize(CIFAR_MEAN, CIFAR_STD).to(dev)
    hm = analysis.fourier_heatmap(model, x, y, eps, input_transform=normalise, seed=seed,
                                  batch_size=batch_size, memory_budget=memory_budget, device=dev,
                                  progress=progress)
    pdm = pdm_mod.analyse(model.first_block, x.shape[1], x.shape[2], x.shape[3], input_transform=normalise,
                          device=dev, batch_size=512)
    out = out or os.path.join(find_run(path)[1], "analysis")
    meta = {"run": cfg.run_name, "model": cfg.model, "data": cfg.data, "device": str(dev),
            "test images": f"the first {len(x)} of the run's test set"}
    return analysis.write_report(out, hm, pdm=pdm, title=cfg.run_name, meta=meta,
                                 corruption_acc=(results or {}).get("corruption_acc"),
                                 clean_acc=(results or {}).get("clean_acc"))


def _bytes(text: str) -> int:
    """``512M``, ``2G``, ``1000000`` -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B")
    try:
        v = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 512M or 2G, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(v)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fastfreq-analyse", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run folder (holding checkpoint.pt) or a checkpoint file")
    ap.add_argument("--out", help="report folder (default <run>/analysis)")
    ap.add_argument("--eps", type=float, default=4.0, help="L2 norm of each Fourier basis image (default 4.0)")
    ap.add_argument("--n-images", type=_positive,
                    help=f"test images to perturb (default {DEFAULT_IMAGES['cpu']} on the CPU, "
                         f"{DEFAULT_IMAGES['cuda']} on a GPU)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random signs (default 0)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--batch-size", type=_positive, help="images per forward batch (default: from memory)")
    ap.add_argument("--memory-budget", type=_bytes,
                    help="memory for one forward batch, e.g. 2G (default: half the free GPU memory; 1G on the CPU)")
    ap.add_argument("--data-root", help="folder holding cifar-10-batches-py/ (default: the run's)")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        paths = analyse_run(a.run, a.out, eps=a.eps, n_images=a.n_images, seed=a.seed, device=a.device,
                            batch_size=a.batch_size, memory_budget=a.memory_budget, data_root=a.data_root)
    except (ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {paths['markdown']} (figures and report.json beside it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
