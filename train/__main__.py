"""fastfreq training CLI.

    fastfreq-train list                              # presets
    fastfreq-train run --preset demo                 # train + evaluate one run
    fastfreq-train run --preset t3-both --data cifar10 --data-root data \\
        --c-root path/to/CIFAR-10-C --epochs 30 --seed 1
    fastfreq-train run --preset demo --resume        # continue a killed run
    fastfreq-train sweep --presets t3-nat t3-both --seeds 0 1 2 3
    fastfreq-train table --runs out/runs --baseline t3-nat
    fastfreq-train gpu-data                          # data/gpu/: what a GPU machine gets
    fastfreq-train campaign --plan table3 --budget-s 540 --out OUT   # Table 3, window by window

Multi-GPU: ``torchrun --nproc_per_node=N -m fastfreq.train run --preset ...`` (DDP; CPU
processes use the gloo backend).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from . import campaign, gpudata
from .engine import NaNLossError, run, run_missing
from .presets import PRESETS, get_preset


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every option's default (those that
    default to the preset's value say so in their help text)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, argparse.SUPPRESS) and action.default is not False \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


PRESET = "(default: the preset's)"


def _common(p: argparse.ArgumentParser):
    p.add_argument("--epochs", type=int,
                   help=f"number of epochs; the lr steps scale with it {PRESET}")
    p.add_argument("--data", choices=["synthetic", "cifar10"],
                   help=f"training data: the embedded synthetic set or CIFAR-10 {PRESET}")
    p.add_argument("--data-root", help="folder holding cifar-10-batches-py/ (default: data)")
    p.add_argument("--c-root", help="CIFAR-10-C folder (default: none for CIFAR-10; for synthetic "
                   "data its own corrupted set, written under <--out>/data)")
    p.add_argument("--n-train", type=int, help=f"training images to use {PRESET}")
    p.add_argument("--n-test", type=int, help=f"test images to use {PRESET}")
    p.add_argument("--batch-size", type=int, help=f"images per step {PRESET}")
    p.add_argument("--lr", type=float, help=f"initial SGD learning rate {PRESET}")
    p.add_argument("--lam", type=float, help=f"weight of the APS auxiliary loss (eq. 10) {PRESET}")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default: the preset's, auto: "
                   "the GPU when there is one)")
    p.add_argument("--compile", action="store_true", default=None,
                   help=f"torch.compile the model {PRESET}")
    p.add_argument("--cuda-graphs", action="store_true", default=None,
                   help="capture the whole training step (augmentation, model, APS loss, backward, "
                        "SGD update) in one CUDA graph and replay it per batch; on CPU the same "
                        "step runs eagerly. Not yet measured on a GPU, so off by default")
    p.add_argument("--out", default="out/runs", help="folder for run directories")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 into --data-root with torchvision first")
    p.add_argument("--analyse", action="store_true",
                   help="write the frequency report (Fourier heat map, PDM, corruptions) into "
                        "<run>/analysis at the end (see fastfreq-analyse)")


def _overrides(a) -> dict:
    return {"epochs": a.epochs, "data": a.data, "data_root": a.data_root, "c_root": a.c_root,
            "n_train": a.n_train, "n_test": a.n_test, "batch_size": a.batch_size, "lr": a.lr,
            "lam": a.lam, "device": a.device, "compile": a.compile, "cuda_graphs": a.cuda_graphs}


def _init_distributed():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        import torch.distributed as dist

        # gloo for CPU tensors always (a --device cpu run on a GPU machine), NCCL
        # for CUDA tensors where there is a GPU
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def _print_results(res: dict):
    keys = ["clean_acc", "rob_all", "rob_15", "rob_19", "mce_unnorm_all", "wall_s"]
    print(json.dumps({k: round(res[k], 3) for k in keys if k in res}))
    if "corruption_acc" in res:
        print(f"\n{'corruption':18s}" + "".join(f"  sev{s}" for s in range(1, 6)) + "   mean")
        for name, accs in res["corruption_acc"].items():
            print(f"{name:18s}" + "".join(f" {a:5.1f}" for a in accs) + f"  {sum(accs) / 5:5.1f}")
        print(f"{'mean over ' + str(res['n_corruptions']):18s}" + " " * 30 + f"  {res['rob_all']:5.1f}")
    if "pdm" in res:
        s = res["pdm"]["band_shares"]
        print(f"\nPDM band shares L/M/H: {s['L']:.2f}/{s['M']:.2f}/{s['H']:.2f}; figure {res['pdm']['figure']}")


def _analyse(a, cfg):
    """The --analyse report of a finished run (its results are already saved)."""
    if a.analyse:
        from .analyse import analyse_run

        paths = analyse_run(os.path.join(a.out, cfg.run_name), device=cfg.device)
        print(f"frequency report: {paths['markdown']}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fastfreq-train", description=__doc__,
                                 formatter_class=_HelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the presets", formatter_class=_HelpFormatter)
    r = sub.add_parser("run", help="train and evaluate one run", formatter_class=_HelpFormatter)
    r.add_argument("--preset", required=True, help="preset name (see `fastfreq-train list`)")
    r.add_argument("--seed", type=int, default=0, help="seed of the model, data order and draws")
    r.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    r.add_argument("--stop-after", type=int,
                   help="stop after this many epochs, then --resume (default: train to the end)")
    _common(r)
    s = sub.add_parser("sweep", help="run presets x seeds (resuming unfinished runs)",
                       formatter_class=_HelpFormatter)
    s.add_argument("--presets", nargs="+", required=True, help="preset names")
    s.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds, one run each")
    _common(s)
    t = sub.add_parser("table", help="aggregate finished runs into Markdown/CSV + PDM figure",
                       formatter_class=_HelpFormatter)
    t.add_argument("--runs", default="out/runs", help="folder holding the run directories")
    t.add_argument("--baseline", help="preset that the others are relative to (default: none, "
                   "all values absolute)")
    t.add_argument("--out", help="output prefix (default: <runs>/table)")
    campaign.add_arguments(sub.add_parser("campaign", help="the next runs of a plan (Table 3) that fit a time "
                                          "budget, with the fast one-GPU recipe"))
    gpudata.add_arguments(sub.add_parser("gpu-data", help="build the data folder that travels to a GPU machine"))
    return ap


def main(argv=None) -> int:
    ap = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    a = ap.parse_args(argv)
    where = {}  # the run folder being worked on, for the interrupt message
    try:
        return _dispatch(a, where)
    except KeyboardInterrupt:  # Ctrl-C: one line saying how to go on, no traceback
        print(_interrupted(ap.prog, argv, where.get("run_dir")), file=sys.stderr, flush=True)
        return 130
    except NaNLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # `... | head` closed the output: nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError) as exc:  # bad arguments, data files, checkpoints, locks
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _interrupted(prog: str, argv: list, run_dir: str | None) -> str:
    """The Ctrl-C line: the run folder and the command that continues the
    work (checkpoints are written after every epoch; a sweep resumes its
    unfinished runs by itself)."""
    cmd = argv[0] if argv else ""
    if cmd == "run":
        again = shlex.join([*prog.split(), *argv, *([] if "--resume" in argv else ["--resume"])])
    else:
        again = shlex.join([*prog.split(), *argv])
    if cmd not in ("run", "sweep"):
        return f"interrupted; nothing was lost, run it again with: {again}"
    folder = f"run folder {run_dir}" if run_dir else "before the first run started"
    return f"interrupted ({folder}); continue with: {again}"


def _dispatch(a, where: dict) -> int:
    if a.cmd == "list":
        for name, fields in PRESETS.items():
            print(f"{name:24s} " + ", ".join(f"{k}={v}" for k, v in fields.items()))
        return 0
    if a.cmd in ("campaign", "gpu-data"):
        return (campaign if a.cmd == "campaign" else gpudata).run_cli(a)
    if a.cmd == "table":
        from .table import write_table

        md, csv_path = write_table(a.runs, a.baseline, a.out)
        print(open(md).read())
        print(f"wrote {md} and {csv_path}")
        return 0

    if a.download:
        from .data import load_cifar10

        load_cifar10(a.data_root or "data", "test", download=True)
    distributed = _init_distributed()
    rank = int(os.environ.get("RANK", "0"))  # only rank 0 evaluates and reports
    try:
        if a.cmd == "run":
            cfg = get_preset(a.preset, seed=a.seed, **_overrides(a))
            where["run_dir"] = os.path.join(a.out, cfg.run_name)
            res = run(cfg, a.out, resume=a.resume, stop_after=a.stop_after)
            if rank == 0:
                if "stopped_after" in res:
                    print(f"stopped after {res['stopped_after']} epochs; continue with --resume")
                else:
                    _print_results(res)
                    _analyse(a, cfg)
        else:
            for preset in a.presets:
                for seed in a.seeds:
                    cfg = get_preset(preset, seed=seed, **_overrides(a))
                    where["run_dir"] = os.path.join(a.out, cfg.run_name)
                    res, skipped = run_missing(cfg, a.out)
                    if rank != 0:
                        continue
                    if skipped:
                        print(f"{cfg.run_name}: done, skipped")
                        continue
                    print(f"{cfg.run_name}: clean {res['clean_acc']:.2f}%"
                          + (f", robustness {res['rob_all']:.2f}%" if "rob_all" in res else ""))
                    _analyse(a, cfg)
        if distributed:
            # the other ranks wait for rank 0's evaluation, so that all tear the
            # process group down together (a rank that left while rank 0 was
            # still evaluating sometimes aborted at exit in gloo: "terminate
            # called without an active exception", about 1 run in 16)
            import torch.distributed as dist

            dist.barrier()
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
