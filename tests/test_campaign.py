"""The Table 3 campaign (train/campaign.py), its fast recipe (train/fast.py)
and the data folder that travels to the GPU machine (train/gpudata.py)."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

from train import campaign as CP
from train import data as D
from train import engine, fast, gpudata
from train.__main__ import main as cli
from train.presets import get_preset

from .conftest import SHARED_DATA

TINY = ["--model", "tiny", "--hidden", "8", "--epochs", "1", "--n-train", "96", "--n-test", "24",
        "--batch-size", "32", "--device", "cpu", "--calib-steps", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against
    each other and these small runs take 20x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _dump(path, images, labels):
    with open(path, "wb") as f:
        pickle.dump({"data": images.reshape(len(images), -1).numpy(), "labels": labels.tolist()}, f)


def tiny_gpu_folder(root, n_per_batch=24, n_test=24, n_c=4):
    """A data folder laid out as train/gpudata.py builds it, from synthetic
    images: cifar-10-batches-py/ already decoded, a CIFAR-10-C subset of the
    first n_c test images (19 corruptions x 5 severities), a manifest."""
    batches = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(batches)
    for i in range(1, 6):
        _dump(os.path.join(batches, f"data_batch_{i}"), *D.synthetic_dataset(n_per_batch, seed=i))
    xte, yte = D.synthetic_dataset(n_test, seed=9)
    _dump(os.path.join(batches, "test_batch"), xte, yte)
    c = os.path.join(root, gpudata.C_DIR)
    os.makedirs(c)
    hwc = xte[:n_c].permute(0, 2, 3, 1).numpy()
    for k, name in enumerate(D.ALL_19):  # a different, simple change per corruption and severity
        np.save(os.path.join(c, f"{name}.npy"),
                np.concatenate([np.clip(hwc.astype(int) + 9 * s + k, 0, 255).astype(np.uint8) for s in range(5)]))
    np.save(os.path.join(c, "labels.npy"), np.tile(yte[:n_c].numpy().astype(np.uint8), 5))
    with open(os.path.join(root, gpudata.MANIFEST), "w") as f:
        json.dump({"format": 1, "n_c_images": n_c, "archive_sha256": None}, f)
    return root


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# ---------------------------------------------------------------- the campaign, end to end
def test_campaign_runs_the_next_runs_and_writes_what_comes_back(tmp_path, capsys):
    data = tiny_gpu_folder(str(tmp_path / "gpu"))
    out, results = str(tmp_path / "out"), str(tmp_path / "results")
    args = ["campaign", "--plan", "table3", "--data", data, "--results", results, "--out", out, *TINY]
    assert cli(args + ["--budget-s", "100000", "--max-runs", "2"]) == 0
    assert files_under(out) == ["campaign.json", "t3-nat-s0/results.json", "t3-nat-s1/results.json", "table.md"]
    r = json.load(open(os.path.join(out, "t3-nat-s0", "results.json")))
    assert r["config"]["model"] == "tiny" and r["config"]["epochs"] == 1 and r["seed"] == 0
    assert r["history"][0]["images"] == 96  # the whole (5 x 24 -> first 96) training subset once
    assert sorted(r["real_c"]["corruption_acc"]) == sorted(D.ALL_19) and r["real_c"]["n_images"] == 4
    assert sorted(r["builtin_c"]["corruption_acc"]) == sorted(fast.BUILTIN) and r["builtin_c"]["n_images"] == 24
    per = r["real_c"]["corruption_acc"]
    assert r["rob_real19"] == pytest.approx(np.mean([np.mean(per[n]) for n in D.ALL_19]))
    assert r["rob_real15"] == pytest.approx(np.mean([np.mean(per[n]) for n in D.BENCHMARK_15]))
    assert r["real_c"]["mce_unnorm_19"] == pytest.approx(100 - r["rob_real19"])
    assert r["code"]["commit"] and r["recipe"]["device"] == "cpu" and r["images_per_s"] > 0
    assert r["wall_s"] >= r["train_s"] > 0
    # every accuracy is a count of correct images out of the set's size
    assert all(round(a * 4 / 100, 6) == int(round(a * 4 / 100)) for accs in per.values() for a in accs)
    rec = json.load(open(os.path.join(out, "campaign.json")))
    assert [d["run"] for d in rec["decisions"] if d["started"]] == ["t3-nat-s0", "t3-nat-s1"]
    assert rec["decisions"][0]["rates_from"] == "calibration"
    assert rec["decisions"][1]["rates_from"] == "measured on t3-nat-s0"
    table = open(os.path.join(out, "table.md")).read()
    assert "| t3-nat | 0,1 |" in table and "| t3-both+att | 0 | not run" in table and "(94.58)" in table
    # the next call skips what is finished and starts the next run of the plan (PS + NFD + APS)
    assert cli(args + ["--budget-s", "100000", "--max-runs", "1"]) == 0
    assert "t3-both+att-s0/results.json" in files_under(out)
    r2 = json.load(open(os.path.join(out, "t3-both+att-s0", "results.json")))
    assert r2["config"]["ps"] and r2["config"]["nfd"] and r2["config"]["labels"] == "learnable"
    assert "| t3-both+att | 0 |" in open(os.path.join(out, "table.md")).read()
    # collected into the tracked folder; a second collect copies nothing
    assert cli(["campaign", "--collect", out, "--results", results, *TINY]) == 0
    assert sorted(os.listdir(results)) == ["t3-both+att-s0", "t3-nat-s0", "t3-nat-s1", "table.md"]
    assert cli(["campaign", "--collect", out, "--results", results, *TINY]) == 0
    assert "none new" in capsys.readouterr().out


def test_campaign_does_not_start_a_run_that_would_not_fit(tmp_path):
    data = tiny_gpu_folder(str(tmp_path / "gpu"))
    out = str(tmp_path / "out")
    huge = [a if a != "1" else "100000" for a in TINY]  # --epochs 100000
    assert cli(["campaign", "--data", data, "--results", str(tmp_path / "r"), "--out", out, "--budget-s", "120",
                "--max-runs", "1", *huge]) == 0
    rec = json.load(open(os.path.join(out, "campaign.json")))
    first = rec["decisions"][0]
    assert first["run"] == "t3-nat-s0" and first["started"] is False
    assert first["estimate_s"] > first["remaining_s"] and "estimated" in first["why"]
    assert not any(d.get("started") for d in rec["decisions"])
    assert files_under(out) == ["campaign.json"]  # nothing finished, no table


def test_estimate_from_measured_rates():
    cfg = get_preset("t3-both+att")  # 90 epochs
    rates = {"train_images_per_s": 40000.0, "eval_images_per_s": 100000.0, "extra_s": 5.0}
    # 1.1 x (90 x 50000 / 40000 + 600000 / 100000) + 5 = 1.1 x 118.5 + 5
    assert CP.estimate_s(cfg, 50000, 600000, rates) == pytest.approx(135.35)


def test_campaign_refuses_to_mix_configurations(tmp_path, capsys, monkeypatch):
    data = tiny_gpu_folder(str(tmp_path / "gpu"))
    out = str(tmp_path / "out")
    args = ["campaign", "--data", data, "--results", str(tmp_path / "r"), "--out", out, "--budget-s", "1000", *TINY]
    assert cli(args + ["--max-runs", "1"]) == 0
    path = os.path.join(out, "t3-nat-s0", "results.json")
    before = open(path).read()
    # a full output folder starts nothing more (it could not send more back)
    monkeypatch.setattr(CP, "MAX_RUNS_PER_WINDOW", 1)
    assert cli(args + ["--max-runs", "1"]) == 0
    rec = json.load(open(os.path.join(out, "campaign.json")))
    assert rec["decisions"] == [{"run": "t3-nat-s1", "started": False, "why": rec["decisions"][0]["why"]}]
    assert "already holds 1 runs" in rec["decisions"][0]["why"]
    assert files_under(out) == ["campaign.json", "t3-nat-s0/results.json", "table.md"]
    capsys.readouterr()
    assert cli(args[:-len(TINY)] + [a if a != "96" else "72" for a in TINY]) == 2  # --n-train 72 now
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_train (result 96, plan 72)" in err[0] and "Refusing to mix" in err[0]
    assert open(path).read() == before  # the finished run is left as it was
    r = json.loads(before)
    r["config"]["lr"] = 0.2
    json.dump(r, open(path, "w"))
    assert cli(args + ["--dry-run"]) == 2
    assert "lr (result 0.2, plan 0.1)" in capsys.readouterr().err


# ---------------------------------------------------------------- the fast recipe
def _cfg(**kw):
    base = dict(model="tiny", hidden=8, epochs=2, n_train=64, n_test=8, batch_size=24, data="synthetic",
                device="cpu", lam=10.0)
    return get_preset("t3-both+att", **{**base, **kw})


def test_fast_recipe_trains_as_the_trainer_does(tmp_path):
    """Same initialisation, data order, augmentation draws, schedule and
    step as train.engine.Trainer: the same per-epoch losses (CPU, float32)."""
    cfg = _cfg(seed=3)
    t = engine.Trainer(cfg, str(tmp_path), progress=False)
    ref = t.fit()
    t.lock.release()
    xtr, ytr = t.loader.images, t.loader.labels
    _, hist = fast.FastRunner("cpu").train(cfg, xtr, ytr, log=None)
    assert [h["loss"] for h in hist] == [h["loss"] for h in ref]
    assert [h["train_acc"] for h in hist] == [h["train_acc"] for h in ref]
    assert [h["lr"] for h in hist] == [h["lr"] for h in ref]


def test_runs_in_one_process_reuse_the_compiled_step_and_share_nothing_else():
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    # the nat. row's architecture: compiling the attention models fails at guard creation on
    # main at 67e695c (ChannelAttention.open_ratio raises before a forward; reported)
    cfg0, cfg1 = (get_preset("t3-nat", model="tiny", epochs=1, batch_size=24, data="synthetic", seed=s)
                  for s in (0, 1))
    xtr, ytr = D.synthetic_dataset(48, seed=5)  # two full batches: one batch shape
    runner = fast.FastRunner("cpu", compile=True, compile_backend=counting_backend)
    torch._dynamo.reset()
    runner.train(cfg0, xtr, ytr, log=None)
    after_first = len(graphs)
    assert after_first >= 1  # (graph breaks, e.g. the CPU-only label check, add graphs)
    first_module = runner.net_for(cfg0)[1]
    _, hist1 = runner.train(cfg1, xtr, ytr, log=None)
    assert runner.net_for(cfg1)[1] is first_module  # the same compiled module
    assert len(graphs) == after_first  # nothing recompiled for the second run
    # the second run starts from its own seed's initialisation, with fresh
    # optimizer state and BN statistics: as a run in a new runner
    _, alone = fast.FastRunner("cpu").train(cfg1, xtr, ytr, log=None)
    assert [h["loss"] for h in hist1] == pytest.approx([h["loss"] for h in alone], rel=1e-6)


def test_builtin_sets_are_the_corruptions_truncated_to_uint8():
    x, y = D.synthetic_dataset(6, seed=2)
    sets = fast.ResidentC.builtin(x, y, "cpu", chunk=4, workers=3)
    assert sets.available() == fast.BUILTIN and sets.n == 6
    got, labels = sets.severity("contrast", 3)
    # contrast at severity 3 (c = 0.4): (x - mean) * c + mean, the mean per image and channel
    xf = x.double() / 255
    m = xf.mean(dim=(2, 3), keepdim=True)
    want = np.floor(np.clip(((xf - m) * 0.4 + m).numpy(), 0, 1) * 255)
    diff = np.abs(got.numpy().astype(float) - want)
    # float32 here, float64 there: a value within round-off of an integer may floor either way
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert torch.equal(labels, y)
    # one seeded generator per (corruption, severity): a set does not depend on the others made
    alone = fast.ResidentC.builtin(x, y, "cpu", names=("speckle_noise",))
    assert fast.BUILTIN.index("speckle_noise") > 0
    assert torch.equal(alone.severity("speckle_noise", 2)[0], sets.severity("speckle_noise", 2)[0])
    assert not torch.equal(sets.severity("speckle_noise", 2)[0], sets.severity("speckle_noise", 3)[0])
    # chunks in threads: the same images as one pass per set
    one = fast.ResidentC.builtin(x, y, "cpu", names=("jpeg_compression", "shot_noise"), chunk=6, workers=1)
    for name in ("jpeg_compression", "shot_noise"):
        assert torch.equal(one.severity(name, 4)[0], sets.severity(name, 4)[0])


# ---------------------------------------------------------------- the data folder
def fake_shared(root, n=20, archive_bytes=300_000):
    """A shared folder as ../shared/data is laid out, with small stand-ins."""
    os.makedirs(os.path.join(root, gpudata.SAMPLE))
    with open(os.path.join(root, gpudata.ARCHIVE), "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, archive_bytes, dtype=np.uint8).tobytes())
    with open(os.path.join(root, gpudata.BUILDER), "w") as f:
        f.write("# stand-in\n")
    rng = np.random.default_rng(1)
    for name in D.ALL_19:
        np.save(os.path.join(root, gpudata.SAMPLE, f"{name}.npy"),
                rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    np.save(os.path.join(root, gpudata.SAMPLE, "labels.npy"), np.tile(rng.integers(0, 10, n).astype(np.uint8), 5))
    return root


def test_data_folder_holds_as_many_images_as_fit_the_budget(tmp_path):
    shared = fake_shared(str(tmp_path / "shared"))
    fixed = 300_000 + len("# stand-in\n") + gpudata.MANIFEST_RESERVE + 20 * 128
    per = 19 * 5 * 3072 + 5
    for k in (3, 7):
        budget = fixed + k * per
        for b, want in ((budget, k), (budget - 1, k - 1)):
            dest = str(tmp_path / f"gpu-{b}")
            m = gpudata.build(shared, dest, b)
            assert m["n_c_images"] == want
            assert gpudata.folder_bytes(dest) <= b
            assert m["bytes"] == gpudata.folder_bytes(dest)
    # the subset is the first N images of every severity, in order
    got = np.load(os.path.join(dest, gpudata.C_DIR, "fog.npy"))
    src = np.load(os.path.join(shared, gpudata.SAMPLE, "fog.npy"))
    n = m["n_c_images"]
    for s in range(5):
        assert np.array_equal(got[s * n:(s + 1) * n], src[s * 20:s * 20 + n])
    with pytest.raises(ValueError, match="budget: .* not one CIFAR-10-C image"):
        gpudata.build(shared, str(tmp_path / "small"), fixed + per - 1)
    with pytest.raises(ValueError, match="n_images: 9 .* at most 3"):
        gpudata.build(shared, str(tmp_path / "over"), fixed + 3 * per, n_images=9)
    assert not os.path.exists(str(tmp_path / "over"))
    # all 20 fit a large budget: no more than the sample has
    assert gpudata.build(shared, str(tmp_path / "big"), 10**9)["n_c_images"] == 20


def test_default_budget_counts_the_rest_of_the_checkout(tmp_path, monkeypatch, capsys):
    shared = fake_shared(str(tmp_path / "shared"))
    rest = gpudata.checkout_bytes()
    assert rest > 100_000  # the tracked sources
    fixed = 300_000 + len("# stand-in\n") + gpudata.MANIFEST_RESERVE + 20 * 128
    # a limit that leaves room for exactly 5 images beside the checkout and the reserve
    monkeypatch.setattr(gpudata, "CHECKOUT_LIMIT", rest + gpudata.RESERVE + fixed + 5 * gpudata.BYTES_PER_IMAGE + 99)
    dest = str(tmp_path / "gpu")
    assert cli(["gpu-data", "--shared", shared, "--dest", dest]) == 0
    assert json.load(open(os.path.join(dest, gpudata.MANIFEST)))["n_c_images"] == 5
    assert rest + gpudata.folder_bytes(dest) <= gpudata.CHECKOUT_LIMIT - gpudata.RESERVE
    assert "5 CIFAR-10-C images" in capsys.readouterr().out


def test_code_identity_without_git_reads_the_stamp(tmp_path):
    stamp = gpudata.write_stamp(str(tmp_path))
    assert stamp["commit"] and "train/campaign.py" in stamp["files"]
    # a copy of the checkout without git metadata (as on the GPU machine)
    copy = tmp_path / "copy"
    for f in stamp["files"]:
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        (copy / f).write_bytes(open(os.path.join(gpudata.ROOT, f), "rb").read())
    got = gpudata.code_identity(str(tmp_path), root=str(copy))
    assert got["commit"] == stamp["commit"] and got["how"].startswith("stamp")
    with open(copy / "train" / "fast.py", "a") as f:
        f.write("# changed\n")
    with pytest.raises(ValueError, match="1 source files differ .* train/fast.py"):
        gpudata.code_identity(str(tmp_path), root=str(copy))
    with pytest.raises(ValueError, match="no git metadata"):
        gpudata.code_identity(str(tmp_path / "nowhere"), root=str(copy))


SAMPLE = os.path.join(SHARED_DATA, gpudata.SAMPLE)
needs_shared = pytest.mark.skipif(not os.path.exists(os.path.join(SAMPLE, "labels.npy")),
                                  reason="../shared/data not present")


@needs_shared
def test_loaders_read_the_real_subset(tmp_path):
    dest = str(tmp_path / "gpu")
    m = gpudata.build(SHARED_DATA, dest, 64 * 2**20, n_images=3)
    assert m["n_c_images"] == 3
    gd = gpudata.GpuData(dest)
    cset = gd.cifar10c()
    labels = np.load(os.path.join(SAMPLE, "labels.npy"))
    for name in ("gaussian_noise", "frost", "saturate"):
        src = np.load(os.path.join(SAMPLE, f"{name}.npy"), mmap_mode="r")
        for s in (1, 5):
            x, y = cset.severity(name, s)
            assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), src[500 * (s - 1):500 * (s - 1) + 3])
            assert np.array_equal(y.numpy(), labels[500 * (s - 1):500 * (s - 1) + 3])
    assert gd.identity()["archive_sha256"] == gpudata._sha256(os.path.join(SHARED_DATA, gpudata.ARCHIVE))


@needs_shared
@pytest.mark.slow
def test_the_copied_builder_decodes_the_archive_in_the_sample_order(tmp_path):
    dest = str(tmp_path / "gpu")
    gpudata.build(SHARED_DATA, dest, 64 * 2**20, n_images=2)
    gd = gpudata.GpuData(dest)
    xtr, ytr, xte, yte = gd.cifar10()
    assert xtr.shape == (50000, 3, 32, 32) and xte.shape == (10000, 3, 32, 32)
    assert gd.cifar_root == dest + ".decoded"  # not inside the folder that travels
    assert gpudata.folder_bytes(dest) < 64 * 2**20
    gd.cifar10c(yte)  # the subset's labels are those of the first test images
    with pytest.raises(D.DataError, match="different test_batch orders"):
        gd.cifar10c(yte.flip(0))
