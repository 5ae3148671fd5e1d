"""The paper's protocol, fast on one GPU, several runs per process (issue 25).

What a run computes is the Trainer's (``train/engine.py``): the same model
and initialisation for a seed (``build_net``), the same SGD and step schedule
(``make_optimizer``), the same step (``train_step``), the same data order and
augmentation draws (``DeviceLoader`` with the run's seed). What differs is
how it is run:

* the data (train split, test split, every corrupted test set) is loaded to
  the device once per process and stays there; crop and flip run there;
* channels_last and bf16 autocast on CUDA (``cfg.amp``, ``cfg.channels_last``),
  fused SGD, cuDNN autotuning;
* optionally ``torch.compile`` (static shapes: one graph for the full batch,
  one for the last, shorter one). A model is built and compiled once per
  architecture; a later run of the same architecture loads its fresh seeded
  initialisation into that module, so the compiled step is reused;
* one host sync per epoch (the loss sums), none per step; no checkpoints
  (a run is not started unless it fits its window: ``train/campaign.py``);
* evaluation in large batches on the resident sets.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from fastfreq.corruptions import CORRUPTIONS, NOISY, corrupt

from .config import RunConfig
from .data import ALL_19, DeviceLoader, to_uint8_truncated
from .engine import NaNLossError, build_net, make_augment, make_optimizer, resolve_device, train_step
from .evaluate import accuracy, corruption_accuracy, summarise

# what decides a module's structure: runs that share these share one compiled step
ARCH_FIELDS = ("model", "attention", "hidden", "labels")
BUILTIN = tuple(n for n in ALL_19 if n in CORRUPTIONS)  # the 11 corruptions fastfreq computes itself


class ResidentC:
    """Corrupted test sets held on the device, read like a CIFAR10C folder
    (``available``, ``severity``) so that ``corruption_accuracy`` evaluates them."""

    def __init__(self, sets: dict, n: int):
        self.sets, self.n = sets, n

    @classmethod
    def from_folder(cls, cset, device) -> "ResidentC":
        sets = {(name, s): tuple(t.to(device) for t in cset.severity(name, s))
                for name in cset.available() for s in range(1, 6)}
        return cls(sets, cset.n)

    @classmethod
    def builtin(cls, images: torch.Tensor, labels: torch.Tensor, device, seed: int = 0,
                names=BUILTIN, chunk: int = 500, workers: int | None = None) -> "ResidentC":
        """``images`` (uint8) corrupted by fastfreq's own corruptions at every
        severity, on the device, uint8-truncated as the CIFAR-10-C generator
        does. Each (corruption, severity) draws from its own seeded generator,
        so a set does not depend on which others were made. The corruptions
        without random draws run chunk by chunk in ``workers`` threads (default:
        one per CPU): pixelate and JPEG go through Pillow one image at a time,
        which releases the GIL; the noisy ones stay in order (one generator)."""
        x = images.to(device)
        y = labels.to(device)
        starts = range(0, len(x), chunk)
        sets = {}
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for name in names:
                for s in range(1, 6):
                    # keyed like the CIFAR-10-C generator: 1000 x the corruption's index + severity
                    g = torch.Generator(device=x.device).manual_seed(seed * 100000 + 1000 * ALL_19.index(name) + s)

                    def one(j, name=name, s=s, g=g):
                        return to_uint8_truncated(corrupt(x[j:j + chunk].float() / 255, name, s, generator=g))

                    parts = [one(j) for j in starts] if name in NOISY else list(pool.map(one, starts))
                    sets[(name, s)] = (torch.cat(parts), y)
        return cls(sets, len(x))

    def available(self, names=ALL_19):
        have = {n for n, _ in self.sets}
        return tuple(n for n in names if n in have)

    def severity(self, name: str, severity: int):
        return self.sets[(name, severity)]

    def images(self) -> int:
        return sum(len(y) for _, y in self.sets.values())


class EvalSets:
    """Everything a run is evaluated on, resident on the device: the clean
    test split, the real CIFAR-10-C subset (None: not evaluated) and the
    built-in corruptions of the whole test split (None: not evaluated)."""

    def __init__(self, xte, yte, device, real_c=None, builtin: bool = True, seed: int = 0):
        t0 = time.perf_counter()
        self.clean = (xte.to(device), yte.to(device))
        self.real = ResidentC.from_folder(real_c, device) if real_c is not None else None
        self.builtin = ResidentC.builtin(xte, yte, device, seed) if builtin else None
        self.build_s = time.perf_counter() - t0

    def images(self) -> int:
        return (len(self.clean[1]) + (self.real.images() if self.real else 0)
                + (self.builtin.images() if self.builtin else 0))


class _ChannelsLast(nn.Module):
    """Evaluation input in the memory format the trained weights use."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.contiguous(memory_format=torch.channels_last))


def _c_summary(per: dict, n_images: int, what: str) -> dict:
    s = summarise(per)
    return {"what": what, "n_images": n_images, "corruption_acc": per,
            **{k: v for k, v in s.items() if k != "n_corruptions"}, "n_corruptions": s["n_corruptions"]}


class FastRunner:
    """Runs configurations one after another in this process (see the module doc)."""

    def __init__(self, device: str = "auto", compile: bool = False, compile_mode: str | None = None,
                 compile_backend: str = "inductor", eval_batch: int | None = None):
        self.device = resolve_device(device)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu:
            torch.backends.cudnn.benchmark = True
        self.compile, self.compile_mode, self.compile_backend = compile, compile_mode, compile_backend
        self.eval_batch = eval_batch or (4000 if self.on_gpu else 500)
        self._nets: dict = {}

    def settings(self) -> dict:
        """How the runs were run (not what they compute)."""
        return {"runner": "train.fast", "device": str(self.device),
                "device_name": torch.cuda.get_device_name(self.device) if self.on_gpu else "cpu",
                "torch": torch.__version__, "compile": self.compile, "compile_mode": self.compile_mode,
                "compile_backend": self.compile_backend if self.compile else None,
                "fused_sgd": self.on_gpu, "cudnn_benchmark": self.on_gpu, "eval_batch": self.eval_batch}

    def _amp(self, cfg: RunConfig):
        return torch.bfloat16 if cfg.amp and self.on_gpu else None

    def net_for(self, cfg: RunConfig):
        """``(net, train_net)`` initialised for ``cfg.seed``: built (and compiled)
        on the first run of an architecture, re-initialised in place after."""
        key = tuple(getattr(cfg, f) for f in ARCH_FIELDS)
        fresh = build_net(cfg)
        if key in self._nets:
            net, train_net = self._nets[key]
            net.load_state_dict(fresh.state_dict())  # copies into the existing tensors
            return net, train_net
        net = fresh.to(self.device)
        if cfg.channels_last and self.on_gpu:
            net = net.to(memory_format=torch.channels_last)
        train_net = net
        if self.compile:
            train_net = torch.compile(net, dynamic=False, backend=self.compile_backend, mode=self.compile_mode)
        self._nets[key] = (net, train_net)
        return net, train_net

    def _sync(self):
        if self.on_gpu:
            torch.cuda.synchronize(self.device)

    def train(self, cfg: RunConfig, xtr, ytr, log=print) -> tuple[nn.Module, list]:
        """Train a fresh model of ``cfg``; returns it and the per-epoch history."""
        net, train_net = self.net_for(cfg)
        opt, sched = make_optimizer(net, cfg, fused=self.on_gpu)
        loader = DeviceLoader(xtr, ytr, cfg.batch_size, device=self.device, augment=make_augment(cfg),
                              seed=cfg.seed)
        amp, history = self._amp(cfg), []
        for epoch in range(cfg.epochs):
            train_net.train()
            loader.set_epoch(epoch)
            sums = torch.zeros(3, device=self.device)
            t0 = time.perf_counter()
            for x, y, params in loader:
                train_step(train_net, opt, cfg, x, y, params, amp, sums)
            loss, aux, correct = sums.tolist()  # the epoch's one host sync
            dt = time.perf_counter() - t0
            n = len(loader.images)
            if not all(math.isfinite(v) for v in (loss, aux)):
                raise NaNLossError(f"{cfg.run_name} epoch {epoch + 1}: the loss became NaN/Inf; "
                                   "try a lower lr or lam")
            lr = opt.param_groups[0]["lr"]  # the rate this epoch trained with, as the Trainer records it
            sched.step()
            history.append({"epoch": epoch + 1, "images": n, "loss": loss / n, "aux": aux / n,
                            "train_acc": 100 * correct / n, "lr": lr,
                            "seconds": dt, "images_per_s": n / dt})
            if log and (epoch + 1 == cfg.epochs or (epoch + 1) % 10 == 0):
                log(f"  {cfg.run_name} epoch {epoch + 1}/{cfg.epochs} loss {loss / n:.3f} "
                    f"train acc {100 * correct / n:.1f}% {n / dt:,.0f} img/s")
        return net, history

    def evaluate(self, net, cfg: RunConfig, sets: EvalSets) -> dict:
        model = _ChannelsLast(net.model) if cfg.channels_last and self.on_gpu else net.model
        kw = dict(device=self.device, batch_size=self.eval_batch, amp_dtype=self._amp(cfg))
        out = {"clean_acc": accuracy(model, *sets.clean, **kw)}
        if sets.real is not None:
            per = corruption_accuracy(model, sets.real, sets.real.available(), **kw)
            out["real_c"] = _c_summary(per, sets.real.n, "real CIFAR-10-C (Hendrycks & Dietterich's generator), "
                                       f"the first {sets.real.n} test images")
        if sets.builtin is not None:
            per = corruption_accuracy(model, sets.builtin, sets.builtin.available(), **kw)
            out["builtin_c"] = _c_summary(per, sets.builtin.n, "fastfreq's built-in corruptions "
                                          f"(fastfreq.corruptions), all {sets.builtin.n} test images")
        return out

    def run(self, cfg: RunConfig, xtr, ytr, sets: EvalSets, log=print) -> dict:
        """Train and evaluate one run; the results (nothing is written)."""
        self._sync()
        t0 = time.perf_counter()
        net, history = self.train(cfg, xtr, ytr, log)
        self._sync()
        t1 = time.perf_counter()
        res = self.evaluate(net, cfg, sets)
        t2 = time.perf_counter()
        images = sum(h["images"] for h in history)
        res.update(history=history, train_s=t1 - t0, eval_s=t2 - t1, wall_s=t2 - t0,
                   images_per_s=images / (t1 - t0), eval_images=sets.images())
        return res

    def calibrate(self, cfg: RunConfig, xtr, ytr, sets: EvalSets, steps: int = 30) -> dict:
        """Measured rates of ``cfg``'s step and of evaluation, on a throwaway
        initialisation (the run re-initialises): the first steps (compilation,
        cuDNN autotuning) are timed apart from ``steps`` steady ones. On CUDA,
        the host syncs during the steady steps are counted."""
        net, train_net = self.net_for(cfg)
        opt, _ = make_optimizer(net, cfg, fused=self.on_gpu)
        loader = DeviceLoader(xtr, ytr, cfg.batch_size, device=self.device, augment=make_augment(cfg),
                              seed=cfg.seed)
        amp, sums = self._amp(cfg), torch.zeros(3, device=self.device)
        warm = 3 if self.on_gpu else 1
        steps = max(1, min(steps, len(loader) - warm))
        batches = iter(loader)
        train_net.train()
        self._sync()
        t0 = time.perf_counter()
        for _ in range(warm):
            train_step(train_net, opt, cfg, *next(batches), amp, sums)
        self._sync()
        t1 = time.perf_counter()
        n = 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.on_gpu:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(steps):
                    x, y, params = next(batches, (None, None, None))
                    if x is None:
                        break
                    train_step(train_net, opt, cfg, x, y, params, amp, sums)
                    n += len(y)
            finally:
                if self.on_gpu:
                    torch.cuda.set_sync_debug_mode("default")
        self._sync()
        t2 = time.perf_counter()
        syncs = sum("synchroniz" in str(w.message) for w in caught) if self.on_gpu else None
        model = _ChannelsLast(net.model) if cfg.channels_last and self.on_gpu else net.model
        k = min(len(sets.clean[1]), 4 * self.eval_batch)
        accuracy(model, sets.clean[0][:k], sets.clean[1][:k], device=self.device,
                 batch_size=self.eval_batch, amp_dtype=amp)  # warm-up (cuDNN, allocator)
        t3 = time.perf_counter()
        accuracy(model, sets.clean[0][:k], sets.clean[1][:k], device=self.device,
                 batch_size=self.eval_batch, amp_dtype=amp)
        t4 = time.perf_counter()
        return {"warmup_steps": warm, "warmup_s": t1 - t0, "steps": steps, "train_images_per_s": n / (t2 - t1),
                "eval_images_per_s": k / (t4 - t3), "host_syncs_in_steady_steps": syncs,
                "calibration_s": t4 - t0}
