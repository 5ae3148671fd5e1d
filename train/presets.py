"""Experiment presets: the paper's rows (Tables 1-4), a demo, and CPU-scale studies.

A preset is a dict of RunConfig fields. The paper's runs use 90 epochs with
the learning rate x0.1 every 30; ``--epochs`` scales that schedule.
"""
from __future__ import annotations

from .config import RunConfig

LMH = [f"{a}{b}{c}" for a in "01" for b in "01" for c in "01"]


def _vgg_rows():
    rows = {}
    for model in ("vgg16", "vgg16_bn"):
        base = dict(model=model, lr=0.01, epochs=90)
        # Table 1
        rows[f"t1-{model}-nat"] = dict(base)
        rows[f"t1-{model}-aug"] = dict(base, ps=True)
        rows[f"t1-{model}-att"] = dict(base, attention="basic")
        rows[f"t1-{model}-aug+att"] = dict(base, ps=True, attention="basic")
        # Table 2: APS with each constraint configuration
        for cfg in LMH:
            rows[f"t2-{model}-LMH={cfg}"] = dict(base, ps=True, attention="basic", labels=f"LMH={cfg}")
    return rows


def _ablation(prefix: str, base: dict, full: str) -> dict:
    """Table 3's ablation for a base setting: natural training, suppression,
    NFD, both, and both with APS (extended attention, learnable labels)."""
    return {
        f"{prefix}-nat": dict(base),
        f"{prefix}-sup": dict(base, ps=True),
        f"{prefix}-nfd": dict(base, nfd=True),
        f"{prefix}-both": dict(base, ps=True, nfd=True),
        f"{prefix}-{full}": dict(base, ps=True, nfd=True, attention="extended", labels="learnable"),
    }


def _resnet_rows():
    base = dict(model="resnet18", lr=0.1, epochs=90)
    rows = _ablation("t3", base, "both+att")
    for lam in (100, 50, 10, 2):
        rows[f"t4-fixed-l{lam}"] = dict(base, ps=True, nfd=True, attention="extended",
                                        labels="LMH=000", lam=float(lam))
        rows[f"t4-learn-l{lam}"] = dict(base, ps=True, nfd=True, attention="extended",
                                        labels="learnable", lam=float(lam))
    return rows


def _cpu_rows():
    """CPU-scale study on real CIFAR-10 (docs/results.md): a narrow ResNet
    (16/32/64 channels) trained for 4 epochs, about 4 minutes per run on the
    2-core machine."""
    base = dict(model="narrow", lr=0.1, epochs=4, data="cifar10", batch_size=128)
    rows = _ablation("cpu", base, "aps+nfd")
    for cfg in ("100", "010", "001"):
        rows[f"cpu-LMH={cfg}"] = dict(base, ps=True, attention="basic", labels=f"LMH={cfg}")
    return rows


PRESETS: dict[str, dict] = {
    "demo": dict(model="tiny", lr=0.05, epochs=4, data="synthetic", n_train=8000, n_test=1000,
                 ps=True, nfd=True, attention="extended", labels="learnable", lam=10.0,
                 hidden=64),
    "demo-nat": dict(model="tiny", lr=0.05, epochs=4, data="synthetic", n_train=8000, n_test=1000,
                     hidden=64),
    **_vgg_rows(),
    **_resnet_rows(),
    **_cpu_rows(),
}


def get_preset(name: str, **overrides) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; valid: {', '.join(PRESETS)}")
    fields = dict(PRESETS[name])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(preset=name, **fields)
