"""Ahead-of-time resource report of the GPU kernels, without a GPU.

    python -m bench aot                       # default configurations, sm_90
    python -m bench aot --full --arch 90 80   # every shipped configuration
    python -m bench aot --gate                # exit 1 if a default 32x32/40x40 config spills,
                                              # or a fixed-size single-pass kernel (sm_80, sm_90)
                                              # has a stack or < 8 resident warps per SM

Compiles the Triton kernel for a target (``triton.compile`` with
``GPUTarget("cuda", arch, 32)``; ptxas and cuobjdump ship in the triton
wheel) and reads per configuration: registers, spill bytes, stack frame,
shared memory, SASS instruction count and the ``tl.dot`` shapes. The CUDA
kernels are read from the built extension (``cuobjdump -res-usage``).

Then a *static estimate* (never a measurement) for one batch of
1024x3x40x40 float32 PS+NFD: the HBM time (bytes in + out over the spec
bandwidth), the tensor-core time (the padded DFT FLOPs over the TF32 rate),
and the instruction-issue time (SASS instructions x warps x planes over
SMs x 4 issue slots x clock); the estimate is the largest of the three. The
CUDA path is estimated from the bytes its passes move.

Writes ``<out>/aot-sm<arch>.json`` and ``.md`` (default out: ``out/bench``).
"""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Hardware figures the estimate uses (vendor spec sheets, H100 SXM5; dense).
H100 = {"name": "H100 SXM (spec)", "sms": 132, "clock_hz": 1.98e9, "hbm_bytes_s": 3.35e12,
        "tf32_flops": 494.7e12, "fp32_flops": 66.9e12, "issue_per_sm_clock": 4}
ESTIMATE_SHAPE = (1024, 3, 40, 40)
SIZES = (32, 40, 64)


def _tools():
    import triton

    base = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    return os.path.join(base, "ptxas"), os.path.join(base, "cuobjdump")


def _signature(fn, dtype: str):
    sig = {n: "constexpr" for n in fn.arg_names}
    for n in fn.arg_names:
        if n.endswith("_ptr"):
            sig[n] = "*fp32"
    sig.update(x_ptr=f"*{dtype}", out_ptr=f"*{dtype}", band_ptr="*i64", seed_ptr="*i64")
    for n in ("sxb", "sxc", "sxh", "sob", "soc", "soh", "C", "H", "W", "Wh", "G"):
        sig[n] = "i32"
    sig["sigma"] = "fp32"
    sig["row_len"] = "i32"
    return sig


def _launch_specialisation(fn):
    """What Triton's JIT specialises at a launch on contiguous tensors: the unit
    innermost strides become constants, the pointers are 16-byte aligned."""
    consts = {"sxw": 1, "sow": 1}
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in fn.arg_names
             if n.endswith("_ptr")}
    return consts, attrs


VARIANTS = {  # name: (HAS_PS, HAS_NFD, NOISE_IN_KERNEL, FROM_ROWS)
    "both": (True, True, True, False),
    "both-explicit-noise": (True, True, False, False),
    "ps": (True, False, False, False),
    "nfd": (False, True, True, False),
    "rows": (True, True, True, True),   # the modules' one launch (draw_params rows)
}
#: variants the gate refuses to spill at their default precision and warps
GATED_VARIANTS = ("both", "rows")


def configurations(full: bool):
    from fastfreq.backends import triton_kernel as tk

    if not full:
        for variant in GATED_VARIANTS:
            for s in SIZES:
                yield dict(H=s, W=s, dtype="fp32", precision=tk.DEFAULT_PRECISION, variant=variant,
                           num_warps=tk.default_warps(s, s))
        return
    for s in SIZES:
        for dtype in ("fp32", "bf16"):
            for precision in tk.PRECISIONS:
                for variant in VARIANTS:
                    for w in (4, 8):
                        yield dict(H=s, W=s, dtype=dtype, precision=precision, variant=variant,
                                   num_warps=w)


def compile_triton(cfg: dict, arch: int) -> dict:
    """Compile one configuration; its resources as ptxas and cuobjdump report them."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastfreq.backends import triton_kernel as tk

    fn = tk._spectral_augment_kernel
    has_ps, has_nfd, noise_in_kernel, from_rows = VARIANTS[cfg["variant"]]
    consts = tk.kernel_meta(cfg["H"], cfg["W"], 5, has_ps, has_nfd, noise_in_kernel, cfg["precision"],
                            from_rows=from_rows)
    unit, attrs = _launch_specialisation(fn)
    t0 = time.perf_counter()
    k = triton.compile(ASTSource(fn=fn, signature=_signature(fn, cfg["dtype"]),
                                 constexprs={**consts, **unit}, attrs=attrs),
                       target=GPUTarget("cuda", arch, 32),
                       options={"num_warps": cfg["num_warps"], "num_stages": 1})
    seconds = time.perf_counter() - t0
    ptxas, cuobjdump = _tools()
    with tempfile.TemporaryDirectory() as d:
        ptx = os.path.join(d, "k.ptx")
        with open(ptx, "w") as f:
            f.write(k.asm["ptx"])
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        rep = subprocess.run([ptxas, "-v", f"--gpu-name={gpu}", ptx, "-o", os.path.join(d, "k.o")],
                             capture_output=True, text=True, check=True).stderr
        cubin = os.path.join(d, "k.cubin")
        with open(cubin, "wb") as f:
            f.write(k.asm["cubin"])
        sass = subprocess.run([cuobjdump, "-sass", cubin], capture_output=True, text=True).stdout
    dots = re.findall(r"tt\.dot .*?: tensor<(\d+)x(\d+)x\w+> \* tensor<(\d+)x(\d+)x\w+>", k.asm["ttir"])
    dot_shapes = [(int(m), int(n2), int(kk)) for m, kk, _, n2 in dots]   # (M, N, K)
    gated = (cfg["variant"] in GATED_VARIANTS and cfg["precision"] == tk.DEFAULT_PRECISION
             and cfg["num_warps"] == tk.default_warps(cfg["H"], cfg["W"], cfg["precision"]))
    return dict(cfg, arch=arch, gated=gated, default=gated and cfg["variant"] == "both",
                registers=_int(r"Used (\d+) registers", rep),
                spill_bytes=_int(r"(\d+) bytes spill stores", rep) + _int(r"(\d+) bytes spill loads", rep),
                stack_bytes=_int(r"(\d+) bytes stack frame", rep), shared_bytes=k.metadata.shared,
                sass_instructions=len(re.findall(r"^\s+/\*[0-9a-f]{4,}\*/", sass, re.M)),
                mma_instructions=len(re.findall(r"\b(?:HGMMA|HMMA)\.", sass)),
                dots=len(dot_shapes), dot_shapes=sorted(set(dot_shapes)),
                dot_flops=sum(2 * m * n * kk for m, n, kk in dot_shapes), compile_s=round(seconds, 1))


def _int(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else 0


def _demangle(names: list[str]) -> list[str]:
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                             timeout=60).stdout.splitlines()
        return out if len(out) == len(names) else names
    except (OSError, subprocess.SubprocessError):
        return names


def cuda_resources() -> list[dict]:
    """Registers / stack / shared of the CUDA kernels in the built extension,
    one row per kernel and architecture (cuobjdump -res-usage)."""
    _, cuobjdump = _tools()
    libs = glob.glob(os.path.join(ROOT, "fastfreq", "_C*.so"))
    if not libs:
        try:
            from fastfreq import _C
            libs = [_C.__file__]
        except ImportError:
            return []
    res = subprocess.run([cuobjdump, "-res-usage", libs[0]], capture_output=True, text=True).stdout
    found = []
    for section in re.split(r"\n(?=Fatbin elf code)", res):
        m = re.search(r"arch = sm_(\d+)", section)
        if not m:
            continue
        for name, body in re.findall(r"Function ([^\s:]+):\s*\n\s*(REG:.*)", section):
            if "fastfreq" in name:
                found.append((int(m.group(1)), name, body))
    pretty = _demangle([name for _, name, _ in found])
    out = []
    for (arch, symbol, body), full in zip(found, pretty):
        row = dict(kernel=_short_name(full), arch=arch, symbol=symbol, library=libs[0],
                   registers=_int(r"REG:(\d+)", body),
                   stack_bytes=_int(r"STACK:(\d+)", body), shared_bytes=_int(r"SHARED:(\d+)", body),
                   local_bytes=_int(r"LOCAL:(\d+)", body))
        sp = re.search(r"single_pass_kernel<(\d+), (\d+), ([\w:]+), (\w+)>", full)
        if sp:
            H, W = int(sp.group(1)), int(sp.group(2))
            row.update(single_pass=True, H=H, W=W, dtype=sp.group(3).split("::")[-1])
            if H > 0:
                row.update(single_pass_residency(H, W, row["registers"], arch))
        out.append(row)
    return out


def _short_name(demangled: str) -> str:
    """``augment_planes_kernel<float>``, ``single_pass_kernel<40, 40, float, float>``."""
    m = re.search(r"(augment_planes_kernel|philox_normal_kernel|single_pass_kernel)(<[^()]*>)?",
                  demangled)
    if not m:
        return demangled[:60]
    return m.group(1) + (m.group(2) or "").replace("c10::", "")


# ---------------------------------------------------------------- single pass
#: Per SM and architecture: shared memory a block may use (opt-in) and the
#: SM holds, warps and blocks it holds (CUDA programming guide, compute
#: capabilities table).
SM_LIMITS = {80: dict(smem_sm=167936, smem_block=166912, warps=64, blocks=32),
             86: dict(smem_sm=102400, smem_block=101376, warps=48, blocks=16),
             89: dict(smem_sm=102400, smem_block=101376, warps=48, blocks=24),
             90: dict(smem_sm=233472, smem_block=232448, warps=64, blocks=32)}
#: Threads per block the single-pass geometry aims at (csrc/single_pass.h).
SINGLE_PASS_THREADS = 128
#: The gate's floor: resident warps per SM for the fixed-size kernels.
MIN_RESIDENT_WARPS = 8


def single_pass_geometry(H: int, W: int) -> dict:
    """The launch geometry of csrc/fft/plane.h make_geometry with the default
    planes per block (tests/test_aot.py checks it against the C++ one)."""
    L = max((H + 1) // 2, (W + 1) // 2)
    G = max(1, SINGLE_PASS_THREADS // L)
    Wh = W // 2 + 1
    S = Wh | 1
    for _ in range(32):
        if (L * (S - 1)) % 32 == 0:
            break
        S += 2
    if (L * (S - 1)) % 32 != 0:
        S = Wh | 1
    P = 2 * H * S
    while P % 32 != (L * S) % 32:
        P += 1
    threads = G * L
    words = G * P + threads + G
    return dict(planes_per_block=G, threads=threads, row_stride=S, plane_stride=P, smem_words=words)


def single_pass_residency(H: int, W: int, registers: int, arch: int, word_bytes: int = 4) -> dict:
    """Blocks and warps of the single-pass kernel one SM holds, from its
    registers (allocated per warp in units of 256) and its shared memory (plus
    the 1 kB the runtime reserves per block)."""
    lim = SM_LIMITS.get(arch, SM_LIMITS[80])
    geo = single_pass_geometry(H, W)
    warps_per_block = -(-geo["threads"] // 32)
    regs_per_warp = -(-registers * 32 // 256) * 256
    by_regs = 65536 // (regs_per_warp * warps_per_block)
    smem = geo["smem_words"] * word_bytes
    by_smem = lim["smem_sm"] // (smem + 1024) if smem <= lim["smem_block"] else 0
    blocks = min(by_regs, by_smem, lim["blocks"], lim["warps"] // warps_per_block)
    return dict(block_threads=geo["threads"], block_smem_bytes=smem, blocks_per_sm=blocks,
                resident_warps=blocks * warps_per_block)


#: H200 SXM figures for the single-pass estimate (spec sheet): HBM3e 4.8 TB/s,
#: 132 SMs at 1.98 GHz, 4 warp instructions issued per SM and clock.
H200 = {"name": "H200 SXM (spec)", "sms": 132, "clock_hz": 1.98e9, "hbm_bytes_s": 4.8e12,
        "issue_per_sm_clock": 4}
SINGLE_PASS_SHAPE = (8192, 3, 40, 40)


def _sass(row: dict) -> list[tuple[int, str]]:
    """(address, instruction) of one kernel's SASS (cuobjdump -sass -fun)."""
    _, cuobjdump = _tools()
    text = subprocess.run([cuobjdump, "-sass", "-arch", f"sm_{row['arch']}", "-fun", row["symbol"],
                           row["library"]], capture_output=True, text=True).stdout
    return [(int(a, 16), ins.strip()) for a, ins in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;/]*);", text)]


def _loops(code: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """(first, last) addresses of every loop: a branch back to an earlier address."""
    out = []
    for addr, ins in code:
        m = re.search(r"\bBRA\b[^;]*?0x([0-9a-f]+)", ins)
        if m and int(m.group(1), 16) < addr:
            out.append((int(m.group(1), 16), addr))
    return out


def single_pass_estimate(row: dict, hw: dict = H200, shape=SINGLE_PASS_SHAPE, n_bands: int = 5) -> dict:
    """Static estimate (never a measurement) of one float32 PS+NFD batch
    through the single-pass kernel ``row`` (a cuda_resources row for H, W of
    ``shape``): the HBM time of reading and writing the images once, and the
    issue time of the warp instructions.

    Warp instructions, a crude loop model on the SASS: every instruction
    once (the row and column phases are straight-line code; paths a thread
    skips are counted as run), then the further trips of the loops: the
    largest loop is the bins phase's item loop (items / threads trips); the
    largest loop inside it is the loop over the block's planes (planes per
    block trips, its body less the loops inside it); those inner loops (the
    per-band noise std, the parameter checks) run n_bands trips once per
    image of the block; any other loop (parameter checks in the row and
    column phases) n_bands trips."""
    B, C, H, W = shape
    geo = single_pass_geometry(H, W)
    code = _sass(row)
    if not code:
        return {}
    step = code[1][0] - code[0][0] if len(code) > 1 else 16
    loops = _loops(code)
    size = {lp: (lp[1] - lp[0]) // step + 1 for lp in loops}

    def inside(lp, of):
        return lp != of and of[0] <= lp[0] and lp[1] <= of[1]

    G = geo["planes_per_block"]
    item_trips = -(-(-(-(W // 2 + 1) // 4) * H) // geo["threads"])
    images = -(-G // C)
    per_warp = len(code)
    outer = max(loops, key=size.get) if loops else None
    if outer:
        per_warp += (item_trips - 1) * size[outer]
        in_outer = [lp for lp in loops if inside(lp, outer)]
        plane = max(in_outer, key=size.get) if in_outer else None
        inner = [lp for lp in in_outer if plane and inside(lp, plane)]
        if plane:
            body = size[plane] - sum(size[lp] for lp in inner)
            per_warp += item_trips * (G - 1) * body
            per_warp += item_trips * (images * n_bands - 1) * sum(size[lp] for lp in inner)
        rest = [lp for lp in loops if lp != outer and lp not in in_outer]
        per_warp += (n_bands - 1) * sum(size[lp] for lp in rest)
    warps = -(-geo["threads"] // 32) * -(-(B * C) // G)
    issue_us = warps * per_warp / (hw["sms"] * hw["issue_per_sm_clock"] * hw["clock_hz"]) * 1e6
    hbm_us = 2 * 4 * B * C * H * W / hw["hbm_bytes_s"] * 1e6
    est_us = max(issue_us, hbm_us)
    return dict(kernel=row["kernel"], arch=row["arch"], hardware=hw["name"], shape=list(shape),
                sass_instructions=len(code), bins_loop_trips=item_trips, warp_instructions=per_warp,
                issue_us=issue_us, hbm_bound_us=hbm_us, estimate_us=est_us,
                x_bound=est_us / hbm_us, images_per_s=B / est_us * 1e6)


def single_pass_gate(rows: list[dict], archs=(80, 90)) -> list[str]:
    """What the gate refuses: a fixed-size (32/40/64) single-pass kernel with
    a stack or local memory, fewer than MIN_RESIDENT_WARPS resident warps, or
    missing for an architecture the build must cover."""
    problems = []
    for arch in archs:
        fixed = [r for r in rows if r.get("single_pass") and r["arch"] == arch and r["H"] > 0]
        if not fixed:
            problems.append(f"no fixed-size single-pass kernel for sm_{arch} in the build")
        for r in fixed:
            what = f"{r['kernel']} sm_{arch}"
            if r["stack_bytes"] or r["local_bytes"]:
                problems.append(f"{what}: {r['stack_bytes']} B stack, {r['local_bytes']} B local")
            if r["resident_warps"] < MIN_RESIDENT_WARPS:
                problems.append(f"{what}: {r['resident_warps']} resident warps per SM "
                                f"(< {MIN_RESIDENT_WARPS}; {r['registers']} registers)")
    return problems


def estimate(triton_cfg: dict | None, hw: dict = H100, shape=ESTIMATE_SHAPE) -> dict:
    """Static roofline of one batch (float32 PS+NFD): microseconds."""
    B, C, H, W = shape
    planes = B * C
    image_bytes = 4 * B * C * H * W
    Wh = W // 2 + 1
    spec_bytes = 8 * B * C * H * Wh
    hbm = 2 * image_bytes / hw["hbm_bytes_s"] * 1e6
    est = {"hbm_bound_us": hbm, "hardware": hw["name"], "shape": list(shape)}
    if triton_cfg is not None:
        mult = {"tf32": 1, "tf32x3": 3}.get(triton_cfg["precision"])
        rate = hw["tf32_flops"] / mult if mult else hw["fp32_flops"]
        tensor = triton_cfg["dot_flops"] * planes / rate * 1e6
        issue = (triton_cfg["sass_instructions"] * triton_cfg["num_warps"] * planes
                 / (hw["sms"] * hw["issue_per_sm_clock"] * hw["clock_hz"]) * 1e6)
        est.update(triton_tensor_us=tensor, triton_issue_us=issue,
                   triton_us=max(hbm, tensor, issue),
                   triton_x_bound=max(hbm, tensor, issue) / hbm)
    # CUDA path: R2C (read x, write spectrum), the fused pass (read x for the
    # L1 norm, read + write the spectrum), ATen's clone of the spectrum before
    # C2R (read + write), C2R (read spectrum, write image); the 1/(HW) scale is
    # folded into the fused pass.
    cuda_bytes = (image_bytes + spec_bytes) + (image_bytes + 2 * spec_bytes) + 2 * spec_bytes \
        + (spec_bytes + image_bytes)
    est.update(cuda_bytes=cuda_bytes, cuda_us=cuda_bytes / hw["hbm_bytes_s"] * 1e6,
               cuda_x_bound=cuda_bytes / (2 * image_bytes))
    return est


def report(archs=(90,), full: bool = False, out: str = "out/bench", gate: bool = False,
           progress: bool = True) -> int:
    os.makedirs(out, exist_ok=True)
    status = 0
    for arch in archs:
        rows = []
        cfgs = list(configurations(full))
        for i, cfg in enumerate(cfgs):
            row = compile_triton(cfg, arch)
            rows.append(row)
            if progress:
                print(f"[{i + 1}/{len(cfgs)}] sm_{arch} {cfg['H']}x{cfg['W']} {cfg['dtype']} "
                      f"{cfg['precision']} {cfg['variant']} w{cfg['num_warps']}: {row['registers']} regs, "
                      f"{row['spill_bytes']} B spill, {row['sass_instructions']} SASS "
                      f"({row['compile_s']} s)", flush=True)
        default40 = next((r for r in rows if r["default"] and r["H"] == 40), None)
        cuda = cuda_resources()
        sp40 = next((r for r in cuda if r.get("single_pass") and r["arch"] == arch and r["H"] == 40
                     and r["dtype"] == "float"), None)
        res = {"arch": arch, "note": "static estimate from the compiled code, not a measurement",
               "triton": rows, "cuda": cuda, "estimate": estimate(default40),
               "single_pass_estimate": single_pass_estimate(sp40) if sp40 else {}}
        stem = os.path.join(out, f"aot-sm{arch}")
        with open(stem + ".json", "w") as f:
            json.dump(res, f, indent=1)
        with open(stem + ".md", "w") as f:
            f.write(markdown(res))
        print(markdown(res))
        print(f"wrote {stem}.json and .md")
        spills = [r for r in rows if r["gated"] and r["H"] in (32, 40) and r["spill_bytes"] > 0]
        if gate and spills:
            print("aot gate: default configurations spill: "
                  + ", ".join(f"{r['H']}x{r['W']} {r['variant']} sm_{arch} ({r['spill_bytes']} B)"
                              for r in spills))
            status = 1
    if gate and any(r.get("single_pass") for r in res["cuda"]):
        problems = single_pass_gate(res["cuda"])
        if problems:
            print("aot gate: single-pass kernel: " + "; ".join(problems))
            status = 1
    return status


def markdown(res: dict) -> str:
    cols = ["H", "W", "dtype", "precision", "variant", "num_warps", "default", "registers",
            "spill_bytes", "stack_bytes", "shared_bytes", "sass_instructions", "mma_instructions",
            "dots"]
    lines = [f"# AOT resources, sm_{res['arch']} (static; no GPU involved)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in res["triton"]]
    if res["cuda"]:
        lines += ["", "CUDA kernels (cuobjdump -res-usage of the built extension):", "",
                  "| kernel | arch | registers | stack | local | block smem | warps/SM |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| `{c['kernel']}` | sm_{c['arch']} | {c['registers']} | {c['stack_bytes']} | "
                  f"{c['local_bytes']} | {c.get('block_smem_bytes', c['shared_bytes'])} | "
                  f"{c.get('resident_warps', '')} |" for c in res["cuda"]]
    e = res["estimate"]
    lines += ["", f"Static estimate (not measured) for {'x'.join(map(str, e['shape']))} float32 PS+NFD on "
              f"{e['hardware']}: HBM bound {e['hbm_bound_us']:.1f} us"]
    if "triton_us" in e:
        lines[-1] += (f"; Triton (default config) max(tensor {e['triton_tensor_us']:.1f}, issue "
                      f"{e['triton_issue_us']:.1f}) = {e['triton_us']:.1f} us = "
                      f"{e['triton_x_bound']:.1f}x the bound")
    lines[-1] += (f"; CUDA path {e['cuda_bytes'] / 1e6:.0f} MB moved = {e['cuda_us']:.1f} us = "
                  f"{e['cuda_x_bound']:.1f}x the bound.")
    sp = res.get("single_pass_estimate") or {}
    if sp:
        lines += ["", f"Single-pass static estimate (not measured) for {'x'.join(map(str, sp['shape']))} "
                  f"float32 PS+NFD on {sp['hardware']}, `{sp['kernel']}` sm_{sp['arch']}: "
                  f"{sp['sass_instructions']} SASS instructions, {sp['warp_instructions']} per warp with "
                  f"{sp['bins_loop_trips']} bins-loop trips; issue {sp['issue_us']:.0f} us, HBM bound "
                  f"{sp['hbm_bound_us']:.0f} us: {sp['x_bound']:.2f}x the bound, "
                  f"{sp['images_per_s'] / 1e6:.0f}M img/s."]
    return "\n".join(lines) + "\n"
