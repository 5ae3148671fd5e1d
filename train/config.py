"""Run configuration."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastfreq import _checks as chk

DATASETS = ("synthetic", "cifar10")
ATTENTION = (None, "none", "basic", "extended")


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return v


@dataclass
class RunConfig:
    preset: str = "custom"
    model: str = "small"
    attention: str | None = None       # None, "basic", "extended"
    hidden: int = 512                   # attention hidden units
    labels: str | None = None           # None, "LMH=abc", "learnable"
    lam: float = 100.0                  # aux loss weight (eq. 10)
    ps: bool = False                    # power suppression augmentation
    ps_p: float = 1 / 3
    nfd: bool = False                   # noise in frequency domain
    sigma: float = 1.0
    epochs: int = 90
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    data: str = "synthetic"
    data_root: str = "data"             # holds cifar-10-batches-py/
    c_root: str | None = None           # CIFAR-10-C folder (default: synthetic-C for synthetic)
    n_train: int | None = None          # subset sizes (None: the whole split)
    n_test: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True                    # bf16 autocast on GPU
    channels_last: bool = True          # on GPU
    compile: bool = False
    cuda_graphs: bool = False           # the whole step as one CUDA graph (train/graphs.py)
    backend: str = "auto"               # fastfreq backend for the augmentation

    def __post_init__(self):
        if self.data not in DATASETS:
            raise ValueError(f"data: expected one of {DATASETS}, got {self.data!r}")
        if self.labels is not None:
            chk.label_config(self.labels)
            if self.attention in (None, "none"):
                raise ValueError(f"labels: {self.labels!r} needs an attention module (attention='basic' "
                                 "or 'extended')")
            if not self.ps:
                raise ValueError("labels: the auxiliary labels come from power suppression; set ps=True")
        for name in ("epochs", "batch_size", "hidden"):
            _positive_int(getattr(self, name), name)
        for name in ("n_train", "n_test"):  # None: the whole split; 0 is not "all"
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {self.seed!r}")
        chk.positive_float(self.lr, "lr")
        chk.nonneg_float(self.lam, "lam")
        chk.sigma(self.sigma)
        chk.probability(self.ps_p, "ps_p")
        chk.probability(self.momentum, "momentum")
        chk.nonneg_float(self.weight_decay, "weight_decay")
        chk.backend_name(self.backend)
        if self.attention not in ATTENTION:
            raise ValueError(f"attention: expected one of {ATTENTION}, got {self.attention!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def run_name(self) -> str:
        return f"{self.preset}-s{self.seed}"

    #: Fields that only say where and how fast a run executes, not what it
    #: trains or evaluates: a run may be resumed (or its results reused) with
    #: others (another device, the compiled model, another augmentation
    #: backend: they all draw the same noise for a seed; amp and
    #: channels_last only act on a GPU; data_root is where the same CIFAR-10
    #: copy lies). Every other field is the run's identity.
    EXECUTION_FIELDS = ("device", "amp", "channels_last", "compile", "cuda_graphs", "backend",
                        "data_root")

    @classmethod
    def identity_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in cls.EXECUTION_FIELDS)

    def identity_diff(self, recorded: dict) -> str | None:
        """None when the ``recorded`` config (of a checkpoint or results.json) is
        this run's identity; else the differing fields as ``"lr (recorded 0.1,
        now 0.05), ..."``. A field the record lacks (an older version) differs."""
        missing = object()
        diff = [(k, recorded.get(k, missing), getattr(self, k)) for k in self.identity_fields()
                if recorded.get(k, missing) != getattr(self, k)]
        if not diff:
            return None
        return ", ".join(f"{k} (recorded {'nothing' if a is missing else repr(a)}, now {b!r})"
                         for k, a, b in diff)
