"""The whole training step as one CUDA graph (``fastfreq-train run --cuda-graphs``).

One full batch is: gather the batch's uint8 images on the device, pad,
augment (``SpectralAugment``: its Philox key is drawn from the loader's
per-epoch generator, which is registered with the graph so that every replay
draws a new key), crop, flip, normalise, forward (attention included), APS
labels and auxiliary loss, backward, and the SGD update (momentum and weight
decay as ``torch.optim.SGD`` computes them, with the learning rate held in a
device tensor so the schedule reaches the replays). ``CapturedStep.body``
is that step; on a GPU it is captured once (after warm-up steps on a side
stream) and replayed for every full batch (each batch trains once: the
warm-up steps are the epoch's first batches); the last, partial batch of an
epoch runs ``body`` eagerly. On CPU ``body`` runs eagerly every time, which
is how the tests check it against the ordinary step (``train_step``).

Status: the capture and replay have not run on a GPU yet (issue 23 says
what is left); the option is off by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class CapturedStep:
    """A training step for ``trainer`` (a ``train.engine.Trainer``) whose
    inputs are static buffers: ``sel`` (batch indices into the loader's
    images) and the loader's generator ``g``."""

    def __init__(self, trainer, warmup: int = 3):
        self.t = trainer
        cfg, dev = trainer.cfg, trainer.device
        if trainer.world > 1:
            raise ValueError("cuda_graphs: not supported with several processes (DDP); "
                             "run without --cuda-graphs")
        if cfg.compile:
            raise ValueError("cuda_graphs: choose either --compile or --cuda-graphs")
        self.batch = cfg.batch_size
        self.sel = torch.zeros(self.batch, dtype=torch.int64, device=dev)
        self.g = torch.Generator(device=dev)
        self.sums = torch.zeros(3, device=dev)  # loss, aux, correct (summed over samples)
        group = trainer.opt.param_groups[0]
        self.lr = torch.tensor(float(group["lr"]), device=dev)
        self.params = [p for p in trainer.net.parameters() if p.requires_grad]
        self.warmup, self._warmed = warmup, 0
        self.graph = None
        self.use_graph = dev.type == "cuda"

    # ------------------------------------------------------------ the step
    def body(self, sel: torch.Tensor | None = None) -> None:
        """One step on the batch ``sel`` (default: the static buffer)."""
        t, cfg = self.t, self.t.cfg
        loader = t.loader
        sel = self.sel if sel is None else sel
        x = loader.images[sel].float() / 255
        x, params = loader._train_transform(x, self.g)
        x = (x - loader.mean) / loader.std
        y = loader.labels[sel]
        if cfg.channels_last and x.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        ps_params = params["ps"] if params is not None and cfg.labels else None
        # no autocast cast cache: a cached cast would outlive the capture
        with torch.autocast(x.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None,
                            cache_enabled=False):
            logits, aux = t.train_net(x, ps_params, cfg.lam)
            ce = F.cross_entropy(logits.float(), y)
        loss = ce + aux
        for p in self.params:
            p.grad = None
        loss.backward()
        self.sgd_update()
        with torch.no_grad():
            self.sums += torch.stack([ce.detach() * len(y), aux.detach() * len(y),
                                      (logits.argmax(1) == y).sum().float()])

    @torch.no_grad()
    def sgd_update(self) -> None:
        """``torch.optim.SGD``'s update (dampening 0, no Nesterov); on a GPU
        with the learning rate read from the device tensor ``self.lr`` (the
        last rounding can differ from SGD's fused ``p - lr d``), eagerly with
        SGD's own formula (bit for bit). The momentum buffers are the
        optimizer's own (checkpoints keep working)."""
        group = self.t.opt.param_groups[0]
        wd, mom = group["weight_decay"], group["momentum"]
        for p in self.params:
            if p.grad is None:
                continue
            d = p.grad.add(p, alpha=wd) if wd else p.grad
            state = self.t.opt.state[p]
            buf = state.get("momentum_buffer")
            if mom:
                if buf is None:  # the first step (eager: during warm-up, before any capture)
                    buf = state["momentum_buffer"] = d.detach().clone()
                else:
                    buf.mul_(mom).add_(d)
                d = buf
            if self.use_graph:  # the rate from the device: the schedule reaches the replays
                p.sub_(d * self.lr)
            else:  # eager: exactly torch.optim.SGD's p + (-lr) d
                p.add_(d, alpha=-group["lr"])

    # ------------------------------------------------------------ an epoch
    def set_epoch(self, epoch: int) -> None:
        """Re-seed the registered generator as the loader seeds its own, and
        bring the schedule's learning rate to the device tensor."""
        loader = self.t.loader
        self.g.manual_seed((loader.seed * 1000003 + epoch) * 1009 + loader.rank)
        self.lr.fill_(float(self.t.opt.param_groups[0]["lr"]))
        self.sums.zero_()

    def step(self, sel: torch.Tensor) -> None:
        """Train on the batch ``sel``, once: on a GPU the first ``warmup``
        full batches run eagerly on a side stream (allocations, cuDNN/cuFFT
        plans, the momentum buffers), the next one is captured and replayed,
        and every later full batch is a replay; a partial batch runs eagerly."""
        if len(sel) != self.batch or not self.use_graph:
            self.body(sel)
            return
        self.sel.copy_(sel)
        if self.graph is not None:
            self.graph.replay()
        elif self._warmed < self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.body()
            torch.cuda.current_stream().wait_stream(side)
            self._warmed += 1
        else:
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(self.g)
            for p in self.params:
                p.grad = None
            with torch.cuda.graph(graph):  # records only; the replay below runs it
                self.body()
            self.graph = graph
            self.graph.replay()
