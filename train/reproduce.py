"""CPU-scale reproduction study on real CIFAR-10 and the CIFAR-10-C sample
(docs/results.md).

    python -m fastfreq.train.reproduce --shared ../shared/data --epochs 4 --seeds 0 1

1. builds ``<out>/data/cifar-10-batches-py`` from the shared JPEG archive
   (once; ``--data-root`` points at an existing copy instead);
2. runs the cpu-* presets (nat., PS, NFD, both, APS+NFD with 2+ seeds; the
   three "LMH" configurations with one) on the full training split, resuming
   unfinished runs;
3. evaluates on the clean test split and the 19 corruptions of the sample;
4. writes the table (relative to nat.), the per-corruption table, the PDM
   figure of nat. and the LMH runs, and the band shares into
   ``<out>/results.md`` (+ CSV, PNG, JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from .data import ALL_19
from .engine import run_missing
from .presets import get_preset
from .table import aggregate, load_runs, pdm_figure, to_markdown

MAIN = ["cpu-nat", "cpu-sup", "cpu-nfd", "cpu-both", "cpu-aps+nfd"]
LMH = ["cpu-LMH=100", "cpu-LMH=010", "cpu-LMH=001"]


def ensure_cifar(shared: str, root: str) -> str:
    """``root`` holding cifar-10-batches-py, built there from the shared archive
    when missing (root is under --out unless the user named it)."""
    if not os.path.exists(os.path.join(root, "cifar-10-batches-py", "test_batch")):
        builder = os.path.join(shared, "build_cifar10.py")
        if not os.path.exists(builder):
            raise SystemExit(f"--shared: {builder} not found; point --shared at the shared data folder")
        subprocess.run([sys.executable, builder, root], check=True)
    return root


def per_corruption_table(runs: dict, presets) -> str:
    lines = ["| corruption | " + " | ".join(presets) + " |", "|---|" + "---|" * len(presets)]
    for name in ALL_19:
        cells = []
        for p in presets:
            accs = [np.mean(r["corruption_acc"][name]) for r in runs.get(p, []) if name in r.get("corruption_acc", {})]
            cells.append(f"{np.mean(accs):.1f}" if accs else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/data", help="folder with build_cifar10.py and CIFAR-10-C-sample")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="out/reproduce")
    ap.add_argument("--data-root", help="folder holding an existing cifar-10-batches-py/ (default: "
                    "built under <out>/data)")
    a = ap.parse_args(argv)
    root = ensure_cifar(a.shared, a.data_root or os.path.join(a.out, "data"))
    c_root = os.path.join(a.shared, "CIFAR-10-C-sample")
    runs_dir = os.path.join(a.out, "runs")
    # the baseline and the frequency-control runs first: the PDM figure needs
    # only them, so a study stopped early still has it
    jobs = ([("cpu-nat", s) for s in a.seeds] + [(p, a.seeds[0]) for p in LMH]
            + [(p, s) for p in MAIN if p != "cpu-nat" for s in a.seeds])
    for preset, seed in jobs:
        cfg = get_preset(preset, seed=seed, epochs=a.epochs, data_root=root, c_root=c_root)
        t0 = time.time()
        res, skipped = run_missing(cfg, runs_dir)
        if skipped:
            continue
        print(f"{cfg.run_name}: clean {res['clean_acc']:.2f}%, rob(19) {res.get('rob_19', float('nan')):.2f}%, "
              f"{time.time() - t0:.0f}s", flush=True)
    runs = load_runs(runs_dir)
    rows = aggregate({k: v for k, v in runs.items() if k in MAIN}, "cpu-nat")
    lmh_rows = aggregate({k: v for k, v in runs.items() if k in LMH + ["cpu-nat"]}, "cpu-nat")
    pdm_figure(runs, os.path.join(a.out, "pdm.png"), ["cpu-nat"] + LMH,
               "First-layer response histograms (DC at the centre)")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("## Main table\n\n" + to_markdown(rows) + "\n## Frequency-control runs\n\n" + to_markdown(lmh_rows)
                + "\n## Accuracy per corruption (mean over severities and seeds)\n\n"
                + per_corruption_table(runs, MAIN + LMH))
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump({"main": rows, "lmh": lmh_rows, "wall_s": {k: [r.get("wall_s") for r in v] for k, v in runs.items()}},
                  f, indent=1)
    print(open(os.path.join(a.out, "results.md")).read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
