"""Models, metrics, a tiny end-to-end run, resume, NaN handling, DDP, tables."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from train import engine
from train.config import RunConfig
from train.data import CIFAR_MEAN, CIFAR_STD, synthetic_dataset
from train.evaluate import accuracy, relative_mce, summarise
from train.models import build_model
from train.presets import PRESETS, get_preset
from train.table import aggregate, load_runs, write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "vgg16_bn", "small", "narrow", "tiny"])
@pytest.mark.parametrize("attention", [None, "basic", "extended"])
def test_model_shapes_and_attention_slot(name, attention):
    m = build_model(name, attention=attention, hidden=32)
    x = torch.rand(2, 3, 32, 32)
    assert m(x).shape == (2, 10)
    fb = m.first_block(x)
    assert fb.dim() == 4 and fb.shape[0] == 2 and fb.min() >= 0
    if attention:
        assert m.open_ratio.shape == (2,)
    else:
        assert m.open_ratio is None


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid: resnet18, vgg16"):
        build_model("resnet50")
    with pytest.raises(ValueError, match="valid: demo"):
        get_preset("table9")
    with pytest.raises(ValueError, match="labels.*attention"):
        RunConfig(labels="learnable", ps=True)


def test_presets_cover_the_paper():
    assert {"t3-nat", "t3-sup", "t3-nfd", "t3-both", "t3-both+att", "demo"} <= set(PRESETS)
    assert sum(k.startswith("t2-vgg16-LMH=") for k in PRESETS) == 8
    assert sum(k.startswith("t4-") for k in PRESETS) == 8
    cfg = get_preset("t3-both", epochs=9)
    assert cfg.epochs == 9 and cfg.lr == 0.1 and cfg.model == "resnet18"


def test_mce_arithmetic():
    run = {"a": [90, 80, 70, 60, 50], "b": [100, 100, 100, 100, 100]}
    base = {"a": [80, 60, 40, 20, 0], "b": [90, 90, 90, 90, 90]}
    # a: errors 150 / 300 = 0.5; b: 0 / 50 = 0 -> mean 0.25 -> 25
    assert relative_mce(run, base) == pytest.approx(25.0)
    s = summarise(run)
    assert s["rob_all"] == pytest.approx((70 + 100) / 2)
    assert s["mce_unnorm_all"] == pytest.approx(15.0)
    assert "rob_15" not in s


def tiny(**kw):
    base = dict(epochs=2, n_train=384, n_test=100, batch_size=64)
    base.update(kw)
    return get_preset("demo", **base)


def test_tiny_run_end_to_end(tmp_path):
    cfg = tiny(epochs=1)
    res = engine.run(cfg, str(tmp_path), progress=False)
    d = tmp_path / "demo-s0"
    for f in ("results.json", "checkpoint.pt", "log.txt", "pdm.png"):
        assert (d / f).exists(), f
    saved = json.loads((d / "results.json").read_text())
    # the reported accuracy is the saved model's on the run's test set, counted here
    net = engine.build_net(cfg)
    net.load_state_dict(torch.load(d / "checkpoint.pt", weights_only=False)["net"])
    xte, yte = engine.load_test(cfg)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CIFAR_MEAN, CIFAR_STD))
    with torch.no_grad():
        pred = net.model.eval()((xte.float() / 255 - mean) / std).argmax(1)
    assert saved["clean_acc"] == pytest.approx(100 * (pred == yte).float().mean().item())
    assert len(saved["corruption_acc"]) == 11
    assert sum(saved["pdm"]["band_shares"].values()) == pytest.approx(1.0)
    assert "basic_open_ratios" in saved and len(res["history"]) == 1


def test_resume_matches_uninterrupted(tmp_path):
    cfg = tiny(epochs=3)
    engine.run(cfg, str(tmp_path / "full"), progress=False)
    part = engine.run(cfg, str(tmp_path / "cut"), stop_after=1, progress=False)
    assert part == {"stopped_after": 1}
    engine.run(cfg, str(tmp_path / "cut"), resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "demo-s0" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "demo-s0" / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["net"]:
        torch.testing.assert_close(a["net"][k], b["net"][k], rtol=1e-5, atol=1e-6)
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    # each epoch's record holds the rate it trained with (x0.1 steps after epochs 1 and 2 of 3)
    lrs = [h["lr"] for h in b["history"]]
    np.testing.assert_allclose(lrs, [cfg.lr, cfg.lr / 10, cfg.lr / 100], rtol=1e-9)


def test_refuses_to_overwrite_and_incompatible_resume(tmp_path):
    cfg = tiny(epochs=2)
    engine.run(cfg, str(tmp_path), stop_after=1, progress=False)
    with pytest.raises(ValueError, match="--resume"):
        engine.run(cfg, str(tmp_path), progress=False)
    other = get_preset("demo", epochs=2, n_train=384, n_test=100, batch_size=32)
    with pytest.raises(ValueError, match="differs in batch_size"):
        engine.run(other, str(tmp_path), resume=True, progress=False)


def quick(**kw):
    """The cheapest run that trains and evaluates (no augmentation, 64 images)."""
    base = dict(epochs=2, n_train=64, n_test=16, batch_size=32, device="cpu")
    base.update(kw)
    return get_preset("demo-nat", **base)


def test_a_short_training_learns(tmp_path):
    """Two epochs of the demo's model on 768 built-in synthetic images: the
    loss falls and held-out images (the synthetic test split) are classified
    far above chance (10%). MEASURED: loss 2.275 -> 2.076, 31.4% on 500
    held-out images; a model that does not learn stays at 10 +- 1.3%."""
    t = engine.Trainer(quick(epochs=2, n_train=768), str(tmp_path), progress=False)
    history = t.fit()
    t.lock.release()
    assert history[-1]["loss"] < history[0]["loss"] - 0.1, [h["loss"] for h in history]
    x, y = synthetic_dataset(500, seed=1)
    assert accuracy(t.net.model, x, y) > 20


@pytest.mark.parametrize("change, field", [(dict(lr=0.01), "lr"), (dict(epochs=3), "epochs"),
                                           (dict(lam=1.0), "lam")])
def test_resume_refuses_another_configuration(tmp_path, change, field):
    """The checkpoint brings back the optimizer and scheduler: a changed lr or
    epochs (milestones) was silently ignored while results.json recorded it.
    Any change of the run's identity is refused, naming the field; execution
    settings (device, backend, compile) may change."""
    engine.run(quick(), str(tmp_path), stop_after=1, progress=False)
    with pytest.raises(ValueError, match=rf"differs in {field} \(recorded .*, now .*\)") as err:
        engine.run(quick(**change), str(tmp_path), resume=True, progress=False)
    assert "\n" not in str(err.value)
    res = engine.run(quick(backend="torch"), str(tmp_path), resume=True, progress=False)
    assert res["config"]["backend"] == "torch" and res["config"]["epochs"] == 2


def test_sweep_does_not_report_another_configurations_results(tmp_path, capsys):
    """`reproduce --epochs 8` after a 4-epoch run once reported the 4-epoch
    results as the 8-epoch ones (run_missing compared names only). A finished
    run of the same configuration is skipped; another one is refused with one
    error line naming the fields, and the finished results stay as they were."""
    from train.__main__ import main

    args = ["sweep", "--presets", "demo-nat", "--n-train", "64", "--n-test", "16", "--batch-size", "32",
            "--device", "cpu", "--out", str(tmp_path)]
    assert main(args + ["--epochs", "1"]) == 0
    done = tmp_path / "demo-nat-s0" / "results.json"
    first = done.read_text()
    assert json.loads(first)["config"]["epochs"] == 1
    capsys.readouterr()
    assert main(args + ["--epochs", "1"]) == 0
    assert "demo-nat-s0: done, skipped" in capsys.readouterr().out
    assert main(args + ["--epochs", "2", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: demo-nat-s0:"), err
    assert "epochs (recorded 1, now 2)" in err and "lr (recorded 0.05, now 0.01)" in err
    assert done.read_text() == first
    with pytest.raises(ValueError, match="differs in epochs"):
        engine.run_missing(quick(epochs=2), str(tmp_path), progress=False)


def test_pdm_probes_go_through_the_input_normalisation(tmp_path, monkeypatch):
    """The model is trained on (x - mean) / std; the PDM probes (0.5 + grating)
    once reached its first block raw, off-centre and about 4x weaker."""
    t = engine.Trainer(quick(), str(tmp_path), progress=False)
    seen = []
    real = t.net.model.first_block
    monkeypatch.setattr(t.net.model, "first_block", lambda x: seen.append(x) or real(x))
    t.pdm()
    t.lock.release()
    probes = torch.cat(seen)
    assert probes.shape == (3 * 32 * 32, 3, 32, 32)
    # probe n < 1024 puts its grating on channel 0: channels 1 and 2 are the
    # mid-grey background, normalised
    for c in (1, 2):
        torch.testing.assert_close(probes[:1024, c], torch.full((1024, 32, 32), (0.5 - CIFAR_MEAN[c]) / CIFAR_STD[c]))
    # the grating's L2 norm t = 4 sqrt(2), scaled by 1 / std of its channel
    grating = probes[1, 0] - probes[1, 0].mean()
    assert float(grating.norm()) == pytest.approx(4 * 2 ** 0.5 / CIFAR_STD[0], rel=1e-5)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(epochs=3)
    engine.run(cfg, str(tmp_path), stop_after=1, progress=False)
    real_ce = engine.F.cross_entropy
    monkeypatch.setattr(engine.F, "cross_entropy", lambda *a, **k: real_ce(*a, **k) * float("nan"))
    with pytest.raises(engine.NaNLossError, match="last good checkpoint.*epoch 1"):
        engine.run(cfg, str(tmp_path), resume=True, progress=False)
    state = torch.load(tmp_path / "demo-s0" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point())


def _cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_killed_run_resumes(tmp_path):
    """SIGKILL a run right after its first checkpoint, then --resume. The test
    proves the kill interrupted the run (killed by the signal, no results,
    epochs left) and that the resumed run continued from the checkpoint (its
    history starts with the checkpoint's) to the end."""
    args = ["run", "--preset", "demo", "--epochs", "4", "--n-train", "1024", "--n-test", "100",
            "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "demo-s0" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill: nothing was interrupted"
    assert not (tmp_path / "demo-s0" / "results.json").exists()
    saved = torch.load(ckpt, weights_only=False)
    done = saved["epoch"] + 1  # epochs finished before the kill
    assert 1 <= done < 4
    out = _cli([*args, "--resume"])
    assert out.returncode == 0, out.stderr
    hist = json.loads((tmp_path / "demo-s0" / "results.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[:done] == saved["history"]  # continued, not restarted
    assert f"resumed from epoch {done}" in (tmp_path / "demo-s0" / "log.txt").read_text()


@pytest.mark.slow
def test_ddp_gloo_two_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "train", "run", "--preset", "demo-nat", "--epochs", "3", "--n-train", "1024",
         "--n-test", "100", "--out", str(tmp_path), "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    # the end of stderr first: that is where a failing rank's error is
    assert out.returncode == 0, f"rc {out.returncode}; stderr ends:\n{out.stderr[-1500:]}\nstdout ends:\n{out.stdout[-500:]}"
    runs = sorted(os.listdir(tmp_path))
    assert runs == ["data", "demo-nat-s0"]   # the run and its generated synthetic-C set
    res = json.loads((tmp_path / "demo-nat-s0" / "results.json").read_text())
    losses = [h["loss"] for h in res["history"]]
    assert losses[-1] < losses[0]
    # each rank trained on its half (512 images); the epoch statistics are
    # all-reduced, so every epoch counts the images of BOTH ranks
    assert [h["images"] for h in res["history"]] == [1024, 1024, 1024]
    assert (tmp_path / "demo-nat-s0" / "log.txt").read_text().count("epoch 3/3") == 1
    assert out.stdout.count('"clean_acc"') == 1  # only rank 0 reports


def fake_run(root, preset, seed, clean, accs):
    d = os.path.join(root, f"{preset}-s{seed}")
    os.makedirs(d)
    res = {"config": {"preset": preset, "seed": seed}, "clean_acc": clean,
           "corruption_acc": {"contrast": accs, "brightness": [a + 10 for a in accs]},
           "pdm": {"band_shares": {"L": 0.5, "M": 0.3, "H": 0.2}}}
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(res, f)


def test_table_aggregation(tmp_path):
    root = str(tmp_path)
    fake_run(root, "nat", 0, 90.0, [80, 70, 60, 50, 40])
    fake_run(root, "nat", 1, 92.0, [80, 70, 60, 50, 40])
    fake_run(root, "aug", 0, 90.5, [85, 75, 65, 55, 45])
    rows = {r["preset"]: r for r in aggregate(load_runs(root), "nat")}
    assert rows["nat"]["clean"] == pytest.approx(91.0)
    assert rows["nat"]["clean_std"] == pytest.approx(np.std([90, 92], ddof=1))
    assert rows["nat"]["mce_rel"] == pytest.approx(100.0)
    assert rows["aug"]["clean"] == pytest.approx(-0.5)
    assert rows["aug"]["rob"] == pytest.approx(5.0)
    # summed errors: contrast 200 -> 175, brightness 150 -> 125
    assert rows["aug"]["mce_rel"] == pytest.approx(100 * (175 / 200 + 125 / 150) / 2)
    md, csv_path = write_table(root, "nat")
    text = open(md).read()
    assert "| nat | 2 | (91.00 +- 1.41)" in text and "| aug | 1 | -0.50" in text
    assert os.path.exists(csv_path)
    with pytest.raises(ValueError, match="baseline"):
        aggregate(load_runs(root), "t3-nat")


def test_table_without_baseline_and_single_seed(tmp_path):
    """`train table` once required --baseline even for one preset and printed
    '+- 0.00' for a single seed."""
    fake_run(str(tmp_path), "only", 0, 90.0, [80, 70, 60, 50, 40])
    out = subprocess.run([sys.executable, "-m", "train", "table", "--runs", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "| only | 1 | (90.00) |" in out.stdout and "+- 0.00" not in out.stdout
    assert "No baseline" in out.stdout


def test_synthetic_data_never_writes_into_a_named_folder(tmp_path):
    """--c-root with synthetic data once wrote the synthetic corrupted set INTO
    that folder (overwriting a real CIFAR-10-C copy). It is refused, and the
    generated set lives under the runs' --out folder."""
    c_root = tmp_path / "CIFAR-10-C"
    c_root.mkdir()
    (c_root / "labels.npy").write_bytes(b"the user's file")
    cfg = get_preset("demo", epochs=1, n_train=64, n_test=16, device="cpu", c_root=str(c_root))
    with pytest.raises(ValueError, match="--c-root"):
        engine.load_data(cfg, str(tmp_path / "runs" / "data"))
    assert (c_root / "labels.npy").read_bytes() == b"the user's file"
    assert sorted(p.name for p in c_root.iterdir()) == ["labels.npy"]
    cfg = get_preset("demo", epochs=1, n_train=64, n_test=16, device="cpu")
    *_, cset = engine.load_data(cfg, str(tmp_path / "runs" / "data"))
    assert os.path.exists(tmp_path / "runs" / "data" / "synthetic-c-16" / "labels.npy")


def test_progress_lines_in_a_log(capfd, monkeypatch):
    """Without a terminal tqdm printed nothing for 100 s; now a line every
    FASTFREQ_PROGRESS_S seconds and one at the end."""
    from fastfreq._progress import progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    bar = progress(range(3), desc="epoch 1/1", unit="batch", interval=0.0)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    err = capfd.readouterr().err
    assert "epoch 1/1: 1/3 batch" in err and "epoch 1/1: 3/3 batch" in err and "loss=0.5" in err


@pytest.mark.slow
def test_a_run_writes_only_under_out(tmp_path):
    """`train run --out X` once wrote its generated data to ./out/data (162 MB);
    started from an empty folder, everything it writes is under X."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = subprocess.run([sys.executable, "-m", "train", "run", "--preset", "demo-nat", "--epochs", "1",
                          "--n-train", "64", "--n-test", "16", "--device", "cpu",
                          "--out", str(tmp_path / "runs")],
                         cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT, MPLCONFIGDIR=str(tmp_path / "mpl")),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.listdir(cwd) == []
    assert sorted(os.listdir(tmp_path / "runs")) == ["data", "demo-nat-s0"]
