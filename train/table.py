"""Aggregate runs into the paper's table format (relative to a baseline, mean
+- std over seeds) as Markdown and CSV, plus the PDM figures and band shares."""
from __future__ import annotations

import csv
import glob
import os
from collections import defaultdict

import numpy as np

from .data import BENCHMARK_15
from .evaluate import relative_mce
from .files import read_results


def load_runs(root: str) -> dict:
    """``{preset: [results, ...]}`` for every ``results.json`` under root."""
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(root, "*", "results.json"))):
        r = read_results(path, set_aside=False)  # a damaged one is named and left out
        if r is not None and "clean_acc" in r:
            r["_dir"] = os.path.dirname(path)
            runs[r["config"]["preset"]].append(r)
    if not runs:
        raise ValueError(f"runs: no finished run (results.json with clean_acc) under {root!r}")
    return dict(runs)


def _ms(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def aggregate(runs: dict, baseline: str | None = None) -> list[dict]:
    """One row per preset: clean accuracy, robustness (mean corruption accuracy
    over the set the runs share) and mCE (unnormalised, and relative to the
    baseline's mean errors = 100), absolute for the baseline and as a
    difference for the others. Without a baseline every row is absolute and
    the relative mCE is left out (NaN)."""
    if baseline is not None and baseline not in runs:
        raise ValueError(f"baseline: no runs of preset {baseline!r}; have {', '.join(runs)}")
    base = runs[baseline] if baseline is not None else next(iter(runs.values()))
    names = sorted(set.intersection(*[set(r.get("corruption_acc", {})) for rs in runs.values() for r in rs]))
    described = {19: "all 19 CIFAR-10-C corruptions", 15: "the 15 benchmark corruptions"}
    corruption_set = described.get(len(names), f"{len(names)} corruptions ({', '.join(names)})")
    has15 = set(BENCHMARK_15) <= set(names) and len(names) > 15
    base_mean = {n: list(np.mean([r["corruption_acc"][n] for r in base], axis=0)) for n in names}

    def rob(r, subset=None):
        subset = names if subset is None else subset
        return float(np.mean([np.mean(r["corruption_acc"][n]) for n in subset])) if subset else float("nan")

    b_clean, _ = _ms([r["clean_acc"] for r in base])
    b_rob, _ = _ms([rob(r) for r in base])
    b_rob15, _ = _ms([rob(r, BENCHMARK_15) for r in base]) if has15 else (float("nan"), 0.0)
    rows = []
    for preset, rs in runs.items():
        clean = _ms([r["clean_acc"] for r in rs])
        robv = _ms([rob(r) for r in rs])
        rel = (_ms([relative_mce({n: r["corruption_acc"][n] for n in names}, base_mean) for r in rs])
               if names and baseline is not None else (float("nan"), 0.0))
        unn = _ms([100 - rob(r) for r in rs])
        is_base = preset == baseline
        absolute = is_base or baseline is None
        shares = [r.get("pdm", {}).get("band_shares") for r in rs if r.get("pdm")]
        rows.append({
            "preset": preset, "runs": len(rs), "baseline": is_base, "absolute": absolute,
            "clean": clean[0] if absolute else clean[0] - b_clean, "clean_std": clean[1],
            "rob": robv[0] if absolute else robv[0] - b_rob, "rob_std": robv[1],
            "rob15": float("nan"), "rob15_std": 0.0,
            "mce_rel": rel[0], "mce_rel_std": rel[1], "mce_unnorm": unn[0], "mce_unnorm_std": unn[1],
            "corruption_set": corruption_set,
            "share_L": float(np.mean([s["L"] for s in shares])) if shares else float("nan"),
            "share_M": float(np.mean([s["M"] for s in shares])) if shares else float("nan"),
            "share_H": float(np.mean([s["H"] for s in shares])) if shares else float("nan"),
            "wall_s": float(np.mean([r.get("wall_s", float("nan")) for r in rs])),
        })
        if has15:
            r15 = _ms([rob(r, BENCHMARK_15) for r in rs])
            rows[-1].update(rob15=r15[0] if absolute else r15[0] - b_rob15, rob15_std=r15[1])
    rows.sort(key=lambda r: (not r["baseline"], r["preset"]))
    return rows


def _spread(m: float, s: float, runs: int, digits: int = 2, signed: bool = False) -> str:
    """``m +- s`` over seeds; a single seed has no spread, so none is printed."""
    v = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    return v if runs < 2 else f"{v} +- {s:.{digits}f}"


def _cell(m: float, s: float, runs: int, absolute: bool) -> str:
    """Absolute values in parentheses, differences from the baseline signed."""
    return f"({_spread(m, s, runs)})" if absolute else _spread(m, s, runs, signed=True)


def to_markdown(rows: list[dict]) -> str:
    cs = rows[0]["corruption_set"] if rows else ""
    has_base = any(r["baseline"] for r in rows)
    has15 = any(np.isfinite(r["rob15"]) for r in rows)
    lines = [f"Clean accuracy and robustness (mean accuracy over {cs}"
             + ("; also over the 15 benchmark corruptions" if has15 else "")
             + ") in %, mCE over the same set relative to the baseline (= 100) and unnormalised "
             "(100 - robustness). "
             + ("The baseline row is absolute (in parentheses); the others are differences from it. "
                if has_base else "No baseline: every value is absolute (in parentheses). ")
             + "Mean +- std over seeds (no spread for a single seed).", "",
             "| preset | runs | clean | robustness" + (" | rob. (15)" if has15 else "")
             + " | mCE (rel.) | mCE (unnorm.) | PDM share L/M/H |",
             "|---|---|---|---|---|---|---|" + ("---|" if has15 else "")]
    for r in rows:
        n, a = r["runs"], r["absolute"]
        cells = [r["preset"], str(n), _cell(r["clean"], r["clean_std"], n, a),
                 _cell(r["rob"], r["rob_std"], n, a)]
        if has15:
            cells.append(_cell(r["rob15"], r["rob15_std"], n, a))
        cells.append(_spread(r["mce_rel"], r["mce_rel_std"], n, 1) if np.isfinite(r["mce_rel"]) else "-")
        cells.append(_spread(r["mce_unnorm"], r["mce_unnorm_std"], n))
        cells.append(f"{r['share_L']:.2f}/{r['share_M']:.2f}/{r['share_H']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(root: str, baseline: str | None = None, out_prefix: str | None = None) -> tuple[str, str]:
    """Write ``<prefix>.md`` and ``<prefix>.csv`` (default ``<root>/table``) and a
    figure with the PDM histograms of every preset. Returns the two paths."""
    runs = load_runs(root)
    rows = aggregate(runs, baseline)
    prefix = out_prefix or os.path.join(root, "table")
    try:
        with open(prefix + ".md", "w") as f:
            f.write(to_markdown(rows))
        with open(prefix + ".csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        pdm_figure(runs, prefix + "_pdm.png")
    except OSError as exc:  # --out names a folder, a missing one, a full disk ...
        raise ValueError(f"out: cannot write {exc.filename or prefix + '.*'} ({exc.strerror or exc}); "
                         "expected --out to be a writable path prefix (e.g. out/table)") from None
    return prefix + ".md", prefix + ".csv"


def pdm_figure(runs: dict, path: str, presets=None, title: str | None = None):
    """One panel per preset (in ``presets`` order, default all): the PDM
    histogram averaged over its runs, DC at the centre. Returns the path, or
    None when no run has a histogram."""
    import torch

    from fastfreq.figures import save, subplots
    from fastfreq.pdm import draw_histogram

    hists = []
    for preset in (presets or list(runs)):
        hs = [torch.load(os.path.join(r["_dir"], "pdm_hist.pt")) for r in runs.get(preset, [])
              if os.path.exists(os.path.join(r["_dir"], "pdm_hist.pt"))]
        if hs:
            hists.append((preset, torch.stack(hs).mean(0)))
    if not hists:
        return None
    fig, axes = subplots(1, len(hists), figsize=(3.2 * len(hists), 3.0), squeeze=False)
    for ax, (name, h) in zip(axes[0], hists):
        draw_histogram(fig, ax, h, name)
    fig.suptitle(title or "PDM response histograms (DC centre; dashed: L/M/H borders)", fontsize=9)
    return save(fig, path, dpi=120)
