"""The build and the README's commands."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from fastfreq.backends import ext


@pytest.mark.skipif(os.environ.get("FASTFREQ_EXPECT_CUDA_BUILD") != "1",
                    reason="only CI asks for the CUDA part")
def test_extension_built_with_cuda_part():
    """CI builds with FASTFREQ_CUDA=1: the CUDA code must have compiled."""
    assert ext.available(), ext.LOAD_ERROR
    assert ext.has_cuda()


def test_demo_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastfreq.demo", "--out", str(tmp_path), "--batch", "32"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Equivalence with the NumPy reference" in out.stdout
    assert (tmp_path / "demo.json").exists() and (tmp_path / "power_suppression.png").exists()


def test_demo_rejects_bad_arguments(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastfreq.demo", "--batch", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--batch" in out.stderr


def test_gpu_check_dry_run_plans_every_step():
    out = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for step in ("[build]", "[tests]", "[throughput]", "[e2e]", "[train]", "[module]", "[memcheck]",
                 "[racecheck]"):
        assert step in out.stdout
    assert "prerequisites:" in out.stdout


def test_module_benchmark_writes_times_and_op_counts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "module", "--batches", "8", "--rounds", "2",
                          "--backends", "auto", "torch", "--ops", "both", "ps", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "module-cpu.json").read_text())["rows"]
    assert [(r["op"], r["batch"], r["backend"] == "torch") for r in rows] == [
        ("both", 8, False), ("both", 8, True), ("ps", 8, False), ("ps", 8, True)]
    for r in rows:
        assert r["module_s"] > 0 and r["bare_s"] > 0 and abs(r["ratio"] - r["module_s"] / r["bare_s"]) < 1e-9
        assert r["module"]["top_level_ops"] == len(r["module"]["ops"])
    if ext.available():  # the compiled op: the module's forward is the key and the sampled op
        assert rows[0]["module"]["top_level_ops"] <= 4, rows[0]["module"]["ops"]
    bad = subprocess.run([sys.executable, "-m", "bench", "module", "--backends", "cudnn",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--backends: 'cudnn'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "bench", "module", "--ops", "nfd",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--ops: module times 'both' or 'ps'" in bad.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_sanitize_workload_says_it_needs_a_gpu():
    out = subprocess.run([sys.executable, "-m", "bench.sanitize"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr


def test_benchmark_cli_writes_json_table_and_plot(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "--batches", "4", "16", "--sizes", "8",
                          "--dtypes", "float32", "--ops", "both", "--repeats", "2",
                          "--backends", "torch", "cpp", "fft-roundtrip", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import json

    js = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    assert len(js) == 1 and js[0].with_suffix(".md").exists() and js[0].with_suffix(".png").exists()
    data = json.loads(js[0].read_text())
    assert data["info"]["device"] == "cpu" and "torch" in data["info"]
    rows = {(r["backend"], r["batch"]) for r in data["rows"]}
    assert ("torch", 4) in rows and ("fft-roundtrip", 16) in rows
    assert all(r["images_per_s"] > 0 for r in data["rows"])


def test_benchmark_cli_says_no_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    out = subprocess.run([sys.executable, "-m", "bench", "--device", "cuda", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "no GPU" in out.stderr


def test_contention_benchmark_cli(tmp_path):
    """`python -m bench contention` runs both conditions (it starts and stops
    its own busy process) and writes the table; no timing is asserted here."""
    out = subprocess.run([sys.executable, "-m", "bench", "contention", "--rounds", "1", "--batch", "8",
                          "--size", "8", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.load(open(tmp_path / "contention-cpu.json"))
    assert {r["condition"] for r in res["rows"]} == {"quiet", "busy"}
    assert {r["threads"] for r in res["rows"]} == {1, 2}
    assert "busy_2t_over_quiet_1t" in res["ratios"]["torch"]
    assert (tmp_path / "contention-cpu.md").exists()


def test_benchmark_precision_on_cuda_without_a_gpu_says_so_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    out = subprocess.run([sys.executable, "-m", "bench", "precision", "--device", "cuda", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda: no CUDA GPU"), lines


def test_readme_install_keeps_an_installed_torch():
    """The install section says how to keep a torch that is already there.
    Checked by hand in a fresh venv with torch==2.13.0 (CPU): the README's
    `pip install torch torchvision` resolved to torch 2.14.1 with its CUDA
    libraries (the newest torchvision requires the newest torch), replacing
    the CPU torch; `pip install torch==2.13.0 torchvision` kept it (with
    torchvision 0.28.0). Not re-run here: it needs the package index."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(root, "README.md")).read()
    section = text.split("## Installing without the Makefile", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"`pip install torch==[0-9.]+ torchvision`", section), section[:600]
    assert "replace" in section and "leave torchvision out" in section


def test_benchmark_aot_without_triton_says_so_in_one_line(tmp_path):
    """`fastfreq-bench aot` (README: no GPU needed) compiles the Triton kernel:
    without Triton (a plain `pip install` has none) it was a traceback ending
    in `No module named 'triton'`; now one error line naming the install."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.modules['triton'] = None  # import triton raises ImportError\n"
            "from bench.__main__ import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "aot", "--out", str(tmp_path)], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: aot: "), lines
    assert "pip install 'triton>=3.4'" in lines[0] and "no GPU" in lines[0], lines


def _option_actions(ap):
    """(parser, action) for every option of a parser and of its subcommands."""
    import argparse

    for act in ap._actions:
        if isinstance(act, argparse._SubParsersAction):
            for sub in act.choices.values():
                yield from _option_actions(sub)
        elif not isinstance(act, argparse._HelpAction):
            yield ap, act


def test_every_cli_option_has_help_and_shows_its_default():
    from bench.__main__ import parser as bench_parser
    from train.__main__ import parser as train_parser

    for ap in (train_parser(), bench_parser()):
        for owner, act in _option_actions(ap):
            name = "/".join(act.option_strings) or act.dest
            assert act.help, f"{owner.prog} {name}: no help text"
            text = " ".join(owner.format_help().split())
            if act.default is not None and act.default is not False:
                shown = " ".join(" ".join(map(str, act.default)) if isinstance(act.default, list)
                                 else [str(act.default)])
                assert f"(default: {act.default})" in text or f"(default: {shown})" in text, \
                    f"{owner.prog} {name}: default {act.default!r} not shown"
            elif not act.required and not (act.nargs == 0 and act.default is False):
                # options whose default is decided elsewhere (the preset) say what it is
                assert "default" in act.help, f"{owner.prog} {name}: help does not say its default"


def test_offline_download_says_what_to_do(tmp_path, monkeypatch):
    """No network: one message naming the URL, the folder and the way out
    (before: only `<urlopen error [Errno 111] Connection refused>`)."""
    try:
        import torchvision as tv
    except Exception as exc:  # missing, or built for another torch (tests/test_fresh_install.py)
        pytest.skip(f"torchvision does not import: {type(exc).__name__}: {exc}")
    from train.data import DataError, load_cifar10

    # a port nothing listens on: the real download path, refused at once
    monkeypatch.setattr(tv.datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataError) as err:
        load_cifar10(str(tmp_path), "test", download=True)
    msg = str(err.value)
    assert msg.startswith("download: could not fetch CIFAR-10 from http://127.0.0.1:9/")
    assert str(tmp_path) in msg and "cifar-10-batches-py" in msg and "drop --download" in msg


def test_user_messages_name_no_development_paths():
    """Users have no ../shared folder: messages and --help must not send them there."""
    from train import data
    from train.__main__ import parser

    for text in (data.WHERE_FROM, data.WHERE_FROM_C, parser().format_help(),
                 open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()):
        assert "../shared" not in text, text[:200]
