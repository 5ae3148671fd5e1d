"""Training and evaluation of one run: APS + NFD on the device, checkpoints
every epoch (atomic), resume, JSON results, a log file, progress bars, DDP."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from fastfreq._progress import progress as progress_bar
from fastfreq.aps import AuxLabels, aux_loss
from fastfreq.transforms import SpectralAugment

from . import data as D
from .config import RunConfig
from .evaluate import accuracy, corruption_accuracy, summarise
from .files import WriteError, atomic_write, keep_beside, read_results, warn, write_json
from .models import build_model


class NaNLossError(RuntimeError):
    pass


class APSNet(nn.Module):
    """Model + label generator in one module, so that DDP sees every parameter
    used in forward (theta of the learnable configuration included)."""

    def __init__(self, model: nn.Module, labels: AuxLabels | None):
        super().__init__()
        self.model = model
        self.labels = labels

    def forward(self, x, ps_params=None, lam: float = 0.0):
        logits = self.model(x)
        aux = logits.new_zeros(())
        if self.labels is not None and ps_params is not None:
            beta = self.labels(ps_params["band"], ps_params["alpha"])
            aux = aux_loss(self.model.open_ratio, beta, ps_params["applied"], lam)
        return logits, aux


def make_optimizer(net: nn.Module, cfg: RunConfig, fused: bool = False):
    """``(SGD, schedule)``: the paper's schedule (x0.1 every 30 of 90 epochs),
    scaled to ``cfg.epochs``. ``fused`` (CUDA only) changes the speed, not the update."""
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, **({"fused": True} if fused else {}))
    milestones = [max(1, round(cfg.epochs * k / 3)) for k in (1, 2)]
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1)


def make_augment(cfg: RunConfig):
    """The run's augmentation on the device (power suppression then NFD), None without."""
    if not (cfg.ps or cfg.nfd):
        return None
    return SpectralAugment(ps_p=cfg.ps_p if cfg.ps else 0.0, sigma=cfg.sigma if cfg.nfd else 0.0,
                           nfd_p=1.0 if cfg.nfd else 0.0, backend=cfg.backend)


def train_step(net, opt, cfg: RunConfig, x, y, params, amp_dtype, sums: torch.Tensor) -> None:
    """One SGD step on a batch from the DeviceLoader (``params``: its
    augmentation draw, for the APS labels). Adds the summed cross-entropy,
    aux loss and correct count to ``sums`` on the device: no host sync."""
    if cfg.channels_last and x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    ps_params = params["ps"] if params is not None and cfg.labels else None
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits, aux = net(x, ps_params, cfg.lam)
        ce = F.cross_entropy(logits.float(), y)
    loss = ce + aux
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        sums += torch.stack([ce.detach() * len(y), aux.detach() * len(y),
                             (logits.argmax(1) == y).sum().float()])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but no CUDA GPU is available")
    return dev


def _dist():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def load_data(cfg: RunConfig, data_dir: str = os.path.join("out", "data")):
    """(train images, train labels, test images, test labels, CIFAR10C or None).

    The synthetic dataset's corrupted test set is generated under ``data_dir``
    (the runs' output folder), never into a folder the user named: a
    ``c_root`` with synthetic data is refused (it would overwrite a real
    CIFAR-10-C copy there, and its images are not the synthetic test set)."""
    if cfg.data == "synthetic":
        if cfg.c_root:
            raise ValueError(f"--c-root {cfg.c_root!r}: the synthetic dataset evaluates on its own "
                             "corrupted set (generated under --out); --c-root needs --data cifar10")
        xtr, ytr = D.synthetic_dataset(cfg.n_train if cfg.n_train is not None else 10000,
                                       seed=cfg.seed * 7919 + 11)
        xte, yte = load_test(cfg)
        c_root = os.path.join(data_dir, f"synthetic-c-{len(xte)}")
        if _dist()[0] == 0:
            D.build_synthetic_c(c_root, n=len(xte), seed=1)
        if _dist()[1] > 1:
            torch.distributed.barrier()
        return xtr, ytr, xte, yte, D.CIFAR10C(c_root)
    xtr, ytr = D.load_cifar10(cfg.data_root, "train")
    xte, yte = load_test(cfg)
    if cfg.n_train:
        xtr, ytr = xtr[:cfg.n_train], ytr[:cfg.n_train]
    return xtr, ytr, xte, yte, D.CIFAR10C(cfg.c_root) if cfg.c_root else None


def load_test(cfg: RunConfig):
    """The run's test images (uint8) and labels: what it is evaluated on."""
    if cfg.data == "synthetic":
        return D.synthetic_dataset(cfg.n_test if cfg.n_test is not None else 2000, seed=1)
    xte, yte = D.load_cifar10(cfg.data_root, "test")
    return (xte[:cfg.n_test], yte[:cfg.n_test]) if cfg.n_test else (xte, yte)


def build_net(cfg: RunConfig) -> APSNet:
    """The run's model and label generator, initialised from ``cfg.seed`` (on the CPU)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, attention=cfg.attention, hidden=cfg.hidden)
    return APSNet(model, AuxLabels(cfg.labels) if cfg.labels else None)


class CheckpointError(ValueError):
    """No usable checkpoint to resume from."""


CKPT_KEYS = ("epoch", "config", "net", "opt", "sched", "history", "rng_cpu")


def _read_checkpoint(path: str, map_location) -> dict:
    """The checkpoint at ``path``; CheckpointError (one line) when it cannot
    be read or lacks a field."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated zip, garbage pickle, EOF ...
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from None
    if not isinstance(state, dict) or any(k not in state for k in CKPT_KEYS):
        raise CheckpointError(f"{path}: not a fastfreq checkpoint (expected the fields "
                              f"{', '.join(CKPT_KEYS)})")
    return state


def save_checkpoint(state: dict, path: str) -> None:
    """Write ``path`` so that a good checkpoint always exists: the new one is
    written to a temporary file and read back; only then the current one
    becomes ``path.prev`` and the new one ``path``. A failed write (a full
    disk) removes the temporary and names the file (WriteError)."""
    def write(tmp):
        torch.save(state, tmp)
        _read_checkpoint(tmp, "cpu")  # verified before it replaces anything
        if os.path.exists(path):
            os.replace(path, path + ".prev")
    atomic_write(path, write, "the previous checkpoint is kept; free space, then continue "
                 "with --resume")


class RunLock:
    """An exclusive lock on a run folder (``.lock``, flock: released by the
    kernel if the process dies), so two runs cannot write one folder."""

    def __init__(self, run_dir: str):
        import fcntl

        self.path = os.path.join(run_dir, ".lock")
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ValueError(f"out: cannot write in the run folder {run_dir} ({exc.strerror}); "
                             "expected --out to be a writable folder") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise ValueError(f"out: run folder {run_dir} is in use by {holder} (lock {self.path}); "
                             "wait for it to finish or use another --out") from None
        try:  # who holds it, for the message above (a full disk fails here first)
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        except OSError as exc:
            self.release()
            raise WriteError(f"{self.path}: could not write it ({exc.strerror})") from None

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


class _LogFile(logging.FileHandler):
    """The run's log.txt; when it cannot be written (a full disk) this says so
    once, in one line, and stops logging to it, instead of logging's
    traceback for every record: the log is not worth stopping a run for."""

    broken = False

    def emit(self, record):
        if not self.broken:
            super().emit(record)

    def handleError(self, record):
        self.broken = True
        warn(f"{self.baseFilename}: could not write the log ({sys.exc_info()[1]}); the run "
             "goes on without it")


def _logger(run_dir: str, rank: int) -> logging.Logger:
    log = logging.getLogger(f"fastfreq.train.{run_dir}")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    if rank == 0:
        fh = _LogFile(os.path.join(run_dir, "log.txt"))
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(fh)
    return log


class Trainer:
    def __init__(self, cfg: RunConfig, out_dir: str = "out/runs", progress: bool = True):
        self.cfg = cfg
        self.rank, self.world = _dist()
        self.device = resolve_device(cfg.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.run_dir = os.path.join(out_dir, cfg.run_name)
        try:
            os.makedirs(self.run_dir, exist_ok=True)
        except OSError as exc:  # --out is a file, under a file, or not writable
            raise ValueError(f"out: cannot create the run folder {self.run_dir} ({exc.strerror}); "
                             "expected --out to be a writable folder") from None
        self.lock = RunLock(self.run_dir) if self.rank == 0 else None
        self.ckpt_path = os.path.join(self.run_dir, "checkpoint.pt")
        self.log = _logger(self.run_dir, self.rank)
        self.progress = progress and self.rank == 0
        on_gpu = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if (cfg.amp and on_gpu) else None

        self.net = build_net(cfg).to(self.device)
        if cfg.channels_last and on_gpu:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.opt, self.sched = make_optimizer(self.net, cfg)
        self.train_net = self.net
        if self.world > 1:
            self.train_net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if on_gpu else None)
        if cfg.compile:
            self.train_net = torch.compile(self.train_net)
        self.start_epoch, self.history = 0, []

        xtr, ytr, self.xte, self.yte, self.cset = load_data(cfg, os.path.join(out_dir, "data"))
        self.loader = D.DeviceLoader(xtr, ytr, cfg.batch_size, device=self.device, augment=make_augment(cfg),
                                     seed=cfg.seed, rank=self.rank, world_size=self.world,
                                     drop_last=self.world > 1)
        self.captured = None
        if cfg.cuda_graphs:
            from .graphs import CapturedStep

            self.captured = CapturedStep(self)

    # ------------------------------------------------------------ checkpoints
    def save(self, epoch: int):
        if self.rank != 0:
            return
        state = {"epoch": epoch, "config": self.cfg.to_dict(), "net": self.net.state_dict(),
                 "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                 "history": self.history, "rng_cpu": torch.get_rng_state()}
        save_checkpoint(state, self.ckpt_path)

    def _load_for_resume(self) -> dict | None:
        """The newest readable checkpoint (warning when it had to fall back to
        the previous one), None when there is none; CheckpointError when
        every one present is unreadable."""
        found = [p for p in (self.ckpt_path, self.ckpt_path + ".prev") if os.path.exists(p)]
        errors = []
        for path in found:
            try:
                state = _read_checkpoint(path, self.device)
            except CheckpointError as exc:
                errors.append(str(exc))
                continue
            if errors:
                msg = (f"resume: {errors[0]}; falling back to the previous checkpoint {path} "
                       f"(epoch {state['epoch'] + 1})")
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                self.log.warning(msg)
            return state
        if errors:
            raise CheckpointError(f"resume: {'; '.join(errors)}; no readable checkpoint left: delete "
                                  f"{self.run_dir} (or use another --out) to start over")
        return None

    def resume(self) -> bool:
        state = self._load_for_resume()
        if state is None:
            return False
        # the optimizer and scheduler state come back with the checkpoint: a
        # changed lr or epochs (milestones) would be silently ignored, yet
        # recorded in results.json, so any change of the run's identity is refused
        diff = self.cfg.identity_diff(state.get("config", {}))
        if diff:
            raise ValueError(f"resume: checkpoint {self.ckpt_path} is from another configuration; "
                             f"differs in {diff}; use another --out (or the checkpoint's settings)")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.history = state["history"]
        torch.set_rng_state(state["rng_cpu"].cpu())  # map_location moved it to the run device
        self.start_epoch = state["epoch"] + 1
        self.log.info(f"resumed from epoch {state['epoch'] + 1}")
        return True

    # ------------------------------------------------------------ training
    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        self.train_net.train()
        self.loader.set_epoch(epoch)
        batches = self.loader
        if self.progress:
            batches = progress_bar(batches, total=len(self.loader), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                               unit="batch", leave=False, mininterval=1.0)
        sums = torch.zeros(3, device=self.device)  # loss, aux, correct (summed over samples)
        seen = 0
        t0 = time.perf_counter()
        if self.captured is not None:  # the step as one CUDA graph: batches of indices
            self.captured.set_epoch(epoch)
            sums = self.captured.sums
            batches = self.loader.index_batches()
            if self.progress:
                batches = progress_bar(batches, total=len(self.loader), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                       unit="batch", leave=False, mininterval=1.0)
        for i, batch in enumerate(batches):
            if self.captured is not None:
                self.captured.step(batch)
                y = batch
            else:
                x, y, params = batch
                train_step(self.train_net, self.opt, cfg, x, y, params, self.amp_dtype, sums)
            seen += len(y)
            if self.progress and i % 20 == 0 and hasattr(batches, "set_postfix"):
                s = sums.tolist()
                batches.set_postfix(loss=f"{s[0] / seen:.3f}", aux=f"{s[1] / seen:.3f}",
                                    acc=f"{100 * s[2] / seen:.1f}")
        totals = torch.cat([sums, torch.tensor([float(seen)], device=self.device)])
        if self.world > 1:
            torch.distributed.all_reduce(totals)
        s = totals.tolist()
        if not all(math.isfinite(v) for v in s):
            raise NaNLossError(f"epoch {epoch + 1}: the loss became NaN/Inf; stopping. The last good "
                               f"checkpoint ({self.ckpt_path}, epoch {epoch}) is kept. Try a lower lr or lam.")
        lr = self.opt.param_groups[0]["lr"]  # the rate this epoch trained with, before the step
        self.sched.step()
        # images: the number trained on in this epoch over ALL ranks (the all-reduced count)
        return {"epoch": epoch + 1, "images": int(s[3]), "loss": s[0] / s[3], "aux": s[1] / s[3],
                "train_acc": 100 * s[2] / s[3],
                "lr": lr, "seconds": time.perf_counter() - t0,
                "images_per_s": s[3] / (time.perf_counter() - t0)}

    def fit(self, stop_after: int | None = None) -> list:
        """Train to cfg.epochs (or ``stop_after`` epochs in this call, to simulate an
        interruption); a checkpoint after every epoch."""
        end = self.cfg.epochs if stop_after is None else min(self.cfg.epochs, self.start_epoch + stop_after)
        for epoch in range(self.start_epoch, end):
            stats = self.train_epoch(epoch)
            self.history.append(stats)
            self.save(epoch)
            msg = (f"epoch {stats['epoch']}/{self.cfg.epochs} loss {stats['loss']:.4f} aux {stats['aux']:.4f} "
                   f"train acc {stats['train_acc']:.2f}% {stats['images_per_s']:.0f} img/s")
            self.log.info(msg)
            if self.rank == 0 and self.progress:
                print(msg, flush=True)
        return self.history

    # ------------------------------------------------------------ evaluation
    def evaluate(self, corruptions=None, started: float | None = None) -> dict:
        """Clean and CIFAR-10-C accuracy; writes results.json and the PDM figure (rank 0).
        ``started`` (a perf_counter time) adds the run's wall time up to the write."""
        res = {"config": self.cfg.to_dict(), "history": self.history, "device": str(self.device)}
        if self.rank != 0:
            return res
        model = self.net.model
        res["clean_acc"] = accuracy(model, self.xte, self.yte, device=self.device, amp_dtype=self.amp_dtype)
        if self.cset is not None:
            names = corruptions or self.cset.available()
            per = corruption_accuracy(model, self.cset, names, device=self.device, amp_dtype=self.amp_dtype,
                                      progress=self.progress)
            res["corruption_acc"] = per
            res.update(summarise(per))
        res["pdm"] = self.pdm()
        if self.net.labels is not None and self.net.labels.learnable:
            res["basic_open_ratios"] = self.net.labels.basic_open_ratios().tolist()
        if started is not None:
            res["wall_s"] = time.perf_counter() - started
        path = os.path.join(self.run_dir, "results.json")
        kept = keep_beside(path)  # run() lets only --resume get here with results present
        write_json(res, path, "the checkpoint is kept; continue with --resume to evaluate again")
        if kept:
            msg = f"{path}: replaced by this evaluation; the earlier results are kept as {kept}"
            self.log.info(msg)
            print(msg, file=sys.stderr, flush=True)
        return res

    def pdm(self) -> dict:
        from fastfreq import pdm

        model = self.net.model
        model.eval()
        figure = os.path.join(self.run_dir, "pdm.png")
        mean, std = self.loader.mean, self.loader.std
        try:
            # the probes are images in [0, 1] like the data: they reach the
            # model through the same input normalisation as its training batches
            out = pdm.analyse(model.first_block, 3, 32, 32, figure, title=self.cfg.run_name,
                              input_transform=lambda probes: (probes - mean) / std,
                              device=self.device, batch_size=512)
        except OSError as exc:
            raise WriteError(f"{figure}: could not write it ({exc.strerror or exc}); the "
                             "checkpoint is kept; continue with --resume to evaluate again") from exc
        hist = out["histogram"].cpu()
        atomic_write(os.path.join(self.run_dir, "pdm_hist.pt"), lambda tmp: torch.save(hist, tmp),
                     "the checkpoint is kept; continue with --resume to evaluate again")
        return {"band_shares": out["band_shares"], "figure": out["figure"]}


def run(cfg: RunConfig, out_dir: str = "out/runs", resume: bool = False, stop_after=None,
        progress: bool = True) -> dict:
    """Train (or resume) and evaluate one run; returns the results dict."""
    t = Trainer(cfg, out_dir, progress)
    try:
        results = os.path.join(t.run_dir, "results.json")
        if resume:
            t.resume()
        elif any(os.path.exists(p) for p in (t.ckpt_path, t.ckpt_path + ".prev")):
            raise ValueError(f"resume: {t.ckpt_path} exists; pass --resume to continue it or use "
                             "another --out / --seed")
        elif os.path.exists(results):  # a finished run whose checkpoints were deleted
            raise ValueError(f"results: {results} holds this run's finished results; pass --resume "
                             "to run it again (the old file is then kept beside the new one), move "
                             "it away, or use another --out / --seed")
        t0 = time.perf_counter()
        t.fit(stop_after)
        if stop_after is not None and t.start_epoch + stop_after < cfg.epochs:
            return {"stopped_after": len(t.history)}
        return t.evaluate(started=t0)
    finally:
        if t.lock is not None:
            t.lock.release()


def run_missing(cfg: RunConfig, out_dir: str = "out/runs", progress: bool = True) -> tuple[dict, bool]:
    """``(results, skipped)``: a finished run of the same configuration is
    skipped (its results read back), an interrupted one resumed, any other
    started. What sweeps use. A finished run of another configuration in the
    run's folder is refused (ValueError naming the fields), never reported as
    this one."""
    done = os.path.join(out_dir, cfg.run_name, "results.json")
    if os.path.exists(done):
        res = read_results(done)  # a damaged file is set aside and the run evaluated again
        if res is not None and "clean_acc" in res:
            diff = cfg.identity_diff(res.get("config", {}))
            if diff:
                raise ValueError(f"{cfg.run_name}: {done} holds a finished run of another "
                                 f"configuration; differs in {diff}; use another --out")
            return res, True
    ckpt = os.path.join(out_dir, cfg.run_name, "checkpoint.pt")
    resume = os.path.exists(ckpt) or os.path.exists(ckpt + ".prev")
    return run(cfg, out_dir, resume=resume, progress=progress), False

