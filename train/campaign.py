"""Campaigns: the paper's Table 3 in windows of a few minutes on one GPU (issue 25).

    fastfreq-train campaign --plan table3 --budget-s 540 --out $OUT
    fastfreq-train campaign --plan table3 --dry-run                 # what is done, what is next
    fastfreq-train campaign --plan table3 --collect FETCHED_DIR     # returned results -> --results

Each call runs, in plan order, the runs that have no finished result in
``--results`` (the tracked folder, default ``docs/results/table3``) or in
``--out``, with ``train.fast``, and stops starting runs when the next would not
finish inside ``--budget-s`` (counted from the interpreter's start):

* before the first run of a step kind (architecture, augmentation, batch), a
  calibration measures its training rate (steady steps after a warm-up that
  absorbs compilation) and the evaluation rate;
* a run's estimate is ``MARGIN`` x (epochs x training images / training rate
  + evaluation images / evaluation rate), plus the warm-up time once when a
  compiled step will meet a new (last, shorter) batch shape; after a run of
  the same kind has finished, its measured rates replace the calibration's;
* a run is started only if its estimate is at most the budget left; one that
  is not is reported with both numbers and left for the next window.

The budget counts from the start of the command's work, after the
interpreter has started and imported torch (that age is recorded as
``process_age_at_start_s``): give ``--budget-s`` the command's time limit
minus that start-up and a margin for the extension build if the command does
one.

The output folder holds, for at most ``MAX_RUNS_PER_WINDOW`` runs,
``<run>/results.json``, plus ``table.md`` (every finished run, with the
paper's numbers) and ``campaign.json`` (this call: budget, calibrations,
estimates, what was started or not and why): at most 8 files, each far below
16 MiB, what one GPU window can send back. A finished result whose
configuration differs from the plan's is refused, never mixed in or
overwritten.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import time

import numpy as np

from .config import RunConfig
from .data import ALL_19, BENCHMARK_15
from .evaluate import relative_mce
from .gpudata import DEFAULT_DIR, ROOT, GpuData, code_identity
from .presets import get_preset

# row order = priority: the minimum (nat. and both+att., 2 seeds) comes first
PLANS = {"table3": {"presets": ("t3-nat", "t3-both+att", "t3-sup", "t3-nfd", "t3-both"),
                    "seed_blocks": ((0, 1), (2, 3)), "baseline": "t3-nat"}}
# the paper's Table 3 (ResNet-18, 4 runs each): clean accuracy, robustness, mCE; nat. absolute
PAPER_TABLE3 = {"t3-nat": (94.58, 72.62, 100), "t3-sup": (-0.15, 4.73, 78), "t3-nfd": (-0.29, 6.60, 80),
                "t3-both": (-0.18, 10.16, 63), "t3-both+att": (-0.25, 10.33, 63)}
MARGIN = 1.10
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20
FIXED_FILES = ("table.md", "campaign.json")
MAX_RUNS_PER_WINDOW = MAX_FILES - len(FIXED_FILES)
DEFAULT_RESULTS = os.path.join(ROOT, "docs", "results", "table3")
# fields that say where or how a run ran, not what it computed
NOT_IDENTITY = ("device", "data_root", "c_root", "compile", "backend")
STEP_FIELDS = ("model", "attention", "hidden", "labels", "ps", "nfd", "batch_size", "amp")


def plan_runs(plan: str) -> list[tuple[str, int]]:
    if plan not in PLANS:
        raise ValueError(f"plan: unknown {plan!r}; valid: {', '.join(PLANS)}")
    p = PLANS[plan]
    return [(preset, seed) for block in p["seed_blocks"] for preset in p["presets"] for seed in block]


def planned_configs(plan: str, data_root: str, c_root: str, overrides: dict) -> list[RunConfig]:
    over = {k: v for k, v in overrides.items() if v is not None}
    return [get_preset(preset, seed=seed, data="cifar10", data_root=data_root, c_root=c_root, **over)
            for preset, seed in plan_runs(plan)]


def identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}


def check_same(cfg: RunConfig, res: dict, where: str, data_id: dict | None = None):
    """ValueError naming the fields where a finished result differs from the plan."""
    want, have = identity(cfg.to_dict()), identity(res.get("config", {}))
    diff = [f"{k} (result {have.get(k)!r}, plan {want.get(k)!r})" for k in sorted(set(want) | set(have))
            if want.get(k) != have.get(k)]
    if data_id is not None and res.get("data") != data_id:
        diff.append(f"data (result {res.get('data')!r}, now {data_id!r})")
    if diff:
        raise ValueError(f"{where}: finished run {cfg.run_name} has another configuration than this campaign: "
                         f"{'; '.join(diff)}. Refusing to mix them: use another --results/--out folder or "
                         "the same overrides")


def load_finished(folders) -> dict:
    """``{run name: (path, results)}`` of every ``<run>/results.json`` with a clean accuracy."""
    found = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "*", "results.json"))):
            try:
                with open(path) as f:
                    res = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: unreadable results ({exc}); move it away to rerun that run") from None
            if "clean_acc" in res:
                found.setdefault(os.path.basename(os.path.dirname(path)), (path, res))
    return found


def validate(cfgs, finished: dict, data_id: dict | None = None):
    """Every finished run is one of the plan's, with the plan's configuration,
    and all share one data identity."""
    by_name = {c.run_name: c for c in cfgs}
    ids = {json.dumps(r.get("data"), sort_keys=True) for _, r in finished.values()}
    if len(ids) > 1:
        raise ValueError(f"results: finished runs were evaluated on different data ({'; '.join(sorted(ids))}); "
                         "refusing to put them in one table")
    for name, (path, res) in finished.items():
        if name not in by_name:
            raise ValueError(f"{path}: run {name!r} is not in this plan ({', '.join(by_name)})")
        check_same(by_name[name], res, path, data_id)


def _process_age_s() -> float | None:
    """Seconds since this interpreter started (from /proc), None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def estimate_s(cfg: RunConfig, n_train: int, eval_images: int, rates: dict) -> float:
    """Seconds a run of ``cfg`` will take, from measured rates (see the module doc)."""
    train = cfg.epochs * n_train / rates["train_images_per_s"]
    return MARGIN * (train + eval_images / rates["eval_images_per_s"]) + rates.get("extra_s", 0.0)


def _atomic_json(obj, path: str):
    text = json.dumps(obj, indent=1)
    if len(text) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {len(text)} bytes, over the {MAX_FILE_BYTES} bytes a GPU window sends back")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def run_campaign(plan: str, budget_s: float, data_dir: str, results_dir: str, out: str, overrides: dict,
                 runner_kw: dict, max_runs: int | None = None, calib_steps: int = 30, log=print,
                 started: float | None = None) -> dict:
    """Run the plan's next runs inside the budget (module doc); returns the
    window's record (also written to ``out/campaign.json``)."""
    from .fast import EvalSets, FastRunner

    t_start = time.monotonic() if started is None else started

    def remaining():
        return budget_s - (time.monotonic() - t_start)

    gd = GpuData(data_dir)
    code = code_identity(data_dir)
    cfgs = planned_configs(plan, gd.cifar_root, gd.c_root, overrides)
    finished = load_finished([results_dir, out])
    validate(cfgs, finished, gd.identity())
    pending = [c for c in cfgs if c.run_name not in finished]
    in_out = len(glob.glob(os.path.join(out, "*", "results.json")))
    slots = MAX_RUNS_PER_WINDOW - in_out
    record = {"plan": plan, "budget_s": budget_s, "process_age_at_start_s": _process_age_s(), "margin": MARGIN, "code": code, "data": gd.identity(),
              "overrides": {k: v for k, v in overrides.items() if v is not None}, "finished_before": sorted(finished),
              "calibrations": {}, "decisions": []}
    os.makedirs(out, exist_ok=True)
    log(f"campaign {plan}: {len(finished)} of {len(cfgs)} runs finished, {len(pending)} to go; "
        f"budget {budget_s:.0f} s, {remaining():.0f} s left")
    if pending and slots <= 0:
        record["decisions"].append({"run": pending[0].run_name, "started": False,
                                    "why": f"{out} already holds {in_out} runs; an output folder sends back at "
                                    f"most {MAX_FILES} files ({MAX_RUNS_PER_WINDOW} runs + {', '.join(FIXED_FILES)})"})
    if pending and slots > 0 and (max_runs is None or max_runs > 0):
        runner = FastRunner(**runner_kw)
        record["recipe"] = runner.settings()
        t0 = time.monotonic()
        xtr, ytr, xte, yte = gd.cifar10()
        real = gd.cifar10c(yte)  # checked against the whole test split's order
        n_train, n_test = pending[0].n_train, pending[0].n_test
        xtr, ytr = xtr[:n_train], ytr[:n_train]
        xte, yte = xte[:n_test], yte[:n_test]
        xtr, ytr = xtr.to(runner.device), ytr.to(runner.device)
        sets = EvalSets(xte, yte, runner.device, real_c=real)
        record["data_load_s"] = time.monotonic() - t0
        log(f"data on {runner.device}: {len(ytr)} train, {len(yte)} test, {real.n} real CIFAR-10-C images; "
            f"{sets.images()} evaluation images per run; {record['data_load_s']:.1f} s")
        rates: dict = {}
        started_runs = 0
        for cfg in pending:
            key = json.dumps([getattr(cfg, f) for f in STEP_FIELDS])
            decision = {"run": cfg.run_name}
            if started_runs >= slots or (max_runs is not None and started_runs >= max_runs):
                limit = slots if max_runs is None else min(slots, max_runs)
                decision.update(started=False, why=f"this call's limit of {limit} runs (--max-runs, and "
                                f"{MAX_RUNS_PER_WINDOW} per output folder: it sends back at most {MAX_FILES} files)")
                record["decisions"].append(decision)
                continue
            if key not in rates:
                if remaining() <= 0:
                    decision.update(started=False, why="no budget left to calibrate")
                    record["decisions"].append(decision)
                    continue
                cal = runner.calibrate(cfg, xtr, ytr, sets, calib_steps)
                partial = runner.compile and len(ytr) % cfg.batch_size != 0
                rates[key] = {**cal, "extra_s": cal["warmup_s"] if partial else 0.0, "from": "calibration"}
                record["calibrations"][cfg.run_name] = rates[key]
                log(f"calibrated {cfg.run_name}: {cal['train_images_per_s']:,.0f} train img/s, "
                    f"{cal['eval_images_per_s']:,.0f} eval img/s, warm-up {cal['warmup_s']:.1f} s")
            est = estimate_s(cfg, len(ytr), sets.images(), rates[key])
            left = remaining()
            decision.update(estimate_s=round(est, 2), remaining_s=round(left, 2), rates_from=rates[key]["from"])
            if est > left:
                decision.update(started=False, why=f"estimated {est:.1f} s > {left:.1f} s left")
                log(f"not started {cfg.run_name}: estimated {est:.1f} s, {left:.1f} s left")
                record["decisions"].append(decision)
                continue
            log(f"start {cfg.run_name}: estimated {est:.1f} s, {left:.1f} s left")
            res = runner.run(cfg, xtr, ytr, sets, log=log)
            res = {"run": cfg.run_name, "preset": cfg.preset, "seed": cfg.seed, "clean_acc": res.pop("clean_acc"),
                   "rob_real19": res["real_c"].get("rob_19"), "rob_real15": res["real_c"].get("rob_15"),
                   "rob_builtin11": res["builtin_c"]["rob_all"], **res, "config": cfg.to_dict(),
                   "data": gd.identity(), "code": code, "recipe": runner.settings(), "estimate_s": est,
                   "rates_from": rates[key]["from"],
                   "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
            _atomic_json(res, os.path.join(out, cfg.run_name, "results.json"))
            started_runs += 1
            rates[key] = {"train_images_per_s": res["images_per_s"],
                          "eval_images_per_s": res["eval_images"] / res["eval_s"], "extra_s": 0.0,
                          "from": f"measured on {cfg.run_name}"}
            decision.update(started=True, wall_s=round(res["wall_s"], 2))
            record["decisions"].append(decision)
            log(f"done {cfg.run_name}: clean {res['clean_acc']:.2f}%, real-19 {res['rob_real19']:.2f}%, "
                f"built-in-11 {res['rob_builtin11']:.2f}%, {res['wall_s']:.1f} s "
                f"(estimated {est:.1f}), {res['images_per_s']:,.0f} train img/s")
            finished[cfg.run_name] = (os.path.join(out, cfg.run_name, "results.json"), res)
            _finish(record, finished, plan, out, t_start)  # after every run: a kill keeps them
    _finish(record, finished, plan, out, t_start)
    return record


def _finish(record, finished, plan, out, t_start):
    record["finished"] = sorted(finished)
    record["pending"] = [f"{p}-s{s}" for p, s in plan_runs(plan) if f"{p}-s{s}" not in finished]
    record["elapsed_s"] = time.monotonic() - t_start
    if finished:
        with open(os.path.join(out, "table.md"), "w") as f:
            f.write(table_markdown(plan, finished))
    _atomic_json(record, os.path.join(out, "campaign.json"))


def collect(plan: str, fetched: str, results_dir: str, overrides: dict) -> list[str]:
    """Copy the finished runs under ``fetched`` into ``results_dir`` (after
    checking them against the plan and the runs already there) and rewrite its
    table. An existing different result is not overwritten."""
    new = load_finished([fetched])
    if not new:
        raise ValueError(f"collect: no <run>/results.json with a clean accuracy under {fetched}")
    have = load_finished([results_dir])
    cfgs = planned_configs(plan, "", "", overrides)
    both = {**have, **{k: v for k, v in new.items() if k not in have}}
    validate(cfgs, both)
    copied = []
    for name, (path, res) in new.items():
        if name in have:
            if json.load(open(have[name][0])) != res:
                raise ValueError(f"collect: {have[name][0]} exists with other results than {path}; "
                                 "refusing to overwrite a finished run")
            continue
        os.makedirs(os.path.join(results_dir, name), exist_ok=True)
        shutil.copyfile(path, os.path.join(results_dir, name, "results.json"))
        copied.append(name)
    with open(os.path.join(results_dir, "table.md"), "w") as f:
        f.write(table_markdown(plan, both))
    return copied


# ---------------------------------------------------------------- table
def _ms(values) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "-"
    return f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} +- {v.std(ddof=1):.2f}"


def _rel(values, base) -> str:
    v = [x - base for x in values if x is not None]
    if not v:
        return "-"
    text = _ms(v)
    return text if text.startswith("-") else "+" + text


def table_markdown(plan: str, finished: dict) -> str:
    """Table 3 from the finished runs: nat. absolute, the others relative to it
    (mean +- std over seeds), with the paper's numbers beside."""
    p = PLANS[plan]
    runs = {pr: [r for _, r in sorted(finished.values(), key=lambda t: t[1]["seed"]) if r["preset"] == pr]
            for pr in p["presets"]}
    base = runs[p["baseline"]]
    any_run = next(r for rs in runs.values() for r in rs)
    n_real = any_run.get("real_c", {}).get("n_images")
    n_test = any_run.get("builtin_c", {}).get("n_images")

    def mean(rs, key):
        v = [r.get(key) for r in rs if r.get(key) is not None]
        return float(np.mean(v)) if v else None

    def base_per(names):
        return {n: list(np.mean([r["real_c"]["corruption_acc"][n] for r in base], axis=0)) for n in names}

    lines = [f"Table 3 campaign: {len(finished)} finished runs. Clean accuracy on the {n_test} CIFAR-10 test "
             f"images; robustness = mean accuracy over corruptions x 5 severities on (a) the real CIFAR-10-C subset "
             f"(first {n_real} test images; 15 benchmark and all 19 corruptions) and (b) fastfreq's 11 built-in "
             f"corruptions over all {n_test} test images. nat. absolute (in parentheses), the other rows relative "
             "to it; mean +- std over seeds. mCE: relative to nat. (= 100), Hendrycks & Dietterich's formula, "
             "on the real subset. The paper's numbers (4 runs each; its corruption set for Rob. is not stated) "
             "are beside.", "",
             "| row | seeds | clean | rob. real-15 | rob. real-19 | rob. built-in-11 | mCE real-15 | mCE real-19 "
             "| train img/s | paper acc. | paper rob. | paper mCE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for preset in p["presets"]:
        rs = runs[preset]
        pa, pr, pm = PAPER_TABLE3.get(preset, (None, None, None))
        paper = [f"({pa:.2f})" if preset == p["baseline"] else f"{pa:+.2f}",
                 f"({pr:.2f})" if preset == p["baseline"] else f"{pr:+.2f}", str(pm)] if pa is not None else ["-"] * 3
        if not rs:
            lines.append(f"| {preset} | 0 | not run | | | | | | | " + " | ".join(paper) + " |")
            continue
        cells = []
        for key in ("clean_acc", "rob_real15", "rob_real19", "rob_builtin11"):
            vals = [r.get(key) for r in rs]
            if preset == p["baseline"]:
                cells.append(f"({_ms(vals)})")
            else:
                b = mean(base, key)
                cells.append(_rel(vals, b) if b is not None else f"({_ms(vals)}) (no nat.)")
        for names in (BENCHMARK_15, ALL_19):
            if base and all(set(names) <= set(r["real_c"]["corruption_acc"]) for r in rs + base):
                ref = base_per(names)
                cells.append(_ms([relative_mce({n: r["real_c"]["corruption_acc"][n] for n in names}, ref, names)
                                  for r in rs]))
            else:
                cells.append("-")
        cells.append(f"{mean(rs, 'images_per_s'):,.0f}")
        lines.append(f"| {preset} | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(cells + paper) + " |")
    lines += ["", "Accuracy per corruption on the real subset (mean over severities and seeds, %):", "",
              "| corruption | " + " | ".join(p["presets"]) + " |", "|---|" + "---|" * len(p["presets"])]
    for name in ALL_19:
        row = []
        for preset in p["presets"]:
            v = [np.mean(r["real_c"]["corruption_acc"][name]) for r in runs[preset]
                 if name in r.get("real_c", {}).get("corruption_acc", {})]
            row.append(f"{np.mean(v):.1f}" if v else "-")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    cfg = any_run["config"]
    commits = sorted({r["code"]["commit"][:12] + ("+dirty" if r["code"].get("dirty") else "")
                      for rs in runs.values() for r in rs})
    devices = sorted({r["recipe"]["device_name"] for rs in runs.values() for r in rs})
    lines += ["", f"Recipe: {cfg['model']}, {cfg['epochs']} epochs, batch {cfg['batch_size']}, lr {cfg['lr']} "
              f"(x0.1 at 1/3 and 2/3), momentum {cfg['momentum']}, weight decay {cfg['weight_decay']}, "
              f"{cfg['n_train'] or 'all'} training images; bf16 autocast on CUDA: {cfg['amp']}. "
              f"Code: {', '.join(commits)}. Devices: {', '.join(devices)}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI
def add_arguments(p):
    p.add_argument("--plan", default="table3", choices=sorted(PLANS),
                   help="the plan whose runs to do (default: %(default)s)")
    p.add_argument("--budget-s", type=float, help="seconds this call may take from its start (after the imports); a run "
                   "whose estimate does not fit what is left is not started (default: no limit)")
    p.add_argument("--data", default=os.path.join(ROOT, DEFAULT_DIR),
                   help="folder made by `fastfreq-train gpu-data` (default: %(default)s)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="tracked folder of finished runs (read; "
                   "--collect writes it) (default: %(default)s)")
    p.add_argument("--out", default=os.path.join("out", "campaign"), help="this window's output folder "
                   "(at most 8 files) (default: %(default)s)")
    p.add_argument("--collect", metavar="DIR", help="copy the finished runs under DIR into --results, then stop "
                   "(default: run the plan instead)")
    p.add_argument("--dry-run", action="store_true", help="list finished and pending runs, run nothing")
    p.add_argument("--max-runs", type=int, help="start at most this many runs (default: as many as fit)")
    p.add_argument("--device", default="auto", help="where to train; auto: cuda if present (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (one compile per architecture)")
    p.add_argument("--compile-mode", help="torch.compile mode (e.g. max-autotune-no-cudagraphs, reduce-overhead; "
                   "default: torch's)")
    p.add_argument("--calib-steps", type=int, default=30,
                   help="steady steps timed per calibration (default: %(default)s)")
    for flag, kind in (("--model", str), ("--epochs", int), ("--n-train", int), ("--n-test", int),
                       ("--batch-size", int), ("--hidden", int)):
        p.add_argument(flag, type=kind, help="override the plan's value (small CPU checks; recorded, and "
                       "results made with other values are refused; default: the plan's)")


def _overrides(a) -> dict:
    return {"model": a.model, "epochs": a.epochs, "n_train": a.n_train, "n_test": a.n_test,
            "batch_size": a.batch_size, "hidden": a.hidden}


def run_cli(a) -> int:
    if a.collect:
        copied = collect(a.plan, a.collect, a.results, _overrides(a))
        print(f"copied {len(copied)} runs into {a.results}: {', '.join(copied) or 'none new'}; "
              f"table {os.path.join(a.results, 'table.md')}")
        return 0
    if a.dry_run:
        cfgs = planned_configs(a.plan, "", "", _overrides(a))
        finished = load_finished([a.results, a.out])
        validate(cfgs, finished)
        for c in cfgs:
            print(f"{c.run_name:18s} {'finished' if c.run_name in finished else 'pending'}")
        return 0
    if a.budget_s is None or not a.budget_s > 0:
        raise ValueError(f"--budget-s: expected a positive number of seconds, got {a.budget_s}")
    if a.max_runs is not None and a.max_runs < 0:
        raise ValueError(f"--max-runs: expected an int >= 0, got {a.max_runs}")
    if a.calib_steps < 1:
        raise ValueError(f"--calib-steps: expected a positive int, got {a.calib_steps}")
    rec = run_campaign(a.plan, a.budget_s, a.data, a.results, a.out, _overrides(a),
                       {"device": a.device, "compile": a.compile, "compile_mode": a.compile_mode},
                       max_runs=a.max_runs, calib_steps=a.calib_steps)
    started = [d["run"] for d in rec["decisions"] if d.get("started")]
    print(f"finished this call: {', '.join(started) or 'none'}; pending: {len(rec['pending'])}; "
          f"{rec['elapsed_s']:.0f} s of {a.budget_s:.0f}; wrote {a.out}/")
    return 0


def main(argv=None) -> int:
    """`python3 -m train.campaign ...`: the entry point on the GPU machine, where the
    checkout travels but is not installed (fastfreq-train is not on its PATH)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m train.campaign", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run_cli(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
