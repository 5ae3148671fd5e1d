"""bench/tf32_emulation.py runs (it once imported a removed helper and nothing
ran it) and its emulation is the kernel's dataflow: at "ieee" it matches the
reference to float32 accuracy; TF32 operands cost accuracy, the 3-product
split wins most of it back."""
import json

from bench import tf32_emulation


def test_tf32_emulation_runs_small(tmp_path, capsys):
    res = tf32_emulation.main(["--sizes", "8", "12", "--batch", "2", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "tf32_emulation.json").read_text()) == res
    assert "wrote" in capsys.readouterr().out
    for n in (8, 12):
        ieee, x3, tf32 = (res[f"{n}x{n} {p}"] for p in ("ieee", "tf32x3", "tf32"))
        assert ieee < 1e-5, res                     # float32 products, the reference's dataflow
        assert tf32 > 10 * x3 and tf32 > 10 * ieee, res   # 10-bit operands: about 2^-11 of the range
        assert tf32 < 0.5 / 255, res                # the default precision's stated budget
