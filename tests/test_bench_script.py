"""The benchmark script runs and writes its table (structure only: no timing asserted)."""

import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "run.py")


def run_bench(tmp_path, *args):
    proc = subprocess.run([sys.executable, BENCH, "--out", str(tmp_path), *args], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    assert (tmp_path / "bench.png").stat().st_size > 5000
    return proc.stdout, rows


def test_bench_quick_layer_section_writes_csv_and_chart(tmp_path):
    out, rows = run_bench(tmp_path, "--quick", "--section", "layers", "--only", "smoothl1")
    assert "NumPy" in out and "SIMD" in out and "found" in out
    assert "ours/native" in out
    assert {r["size"] for r in rows} == {"N=32 C=10", "N=256 C=10", "N=256 C=100", "N=256 C=1000"}
    assert all(r["section"] == "per-layer" and float(r["ours_ms"]) > 0 and float(r["native_ms"]) > 0
               for r in rows)


def test_bench_tiny_run_covers_both_sections_with_targets(tmp_path):
    # every case at toy sizes: the end-to-end nets train a few steps, each layer runs
    out, rows = run_bench(tmp_path, "--tiny", "--clock", "cpu")
    sections = {r["section"] for r in rows}
    assert sections == {"end-to-end", "per-layer"}
    nets = {r["family"] for r in rows if r["section"] == "end-to-end"}
    assert {"LeNet, H=I", "LeNet, full H", "LeNet++", "FCN, full H", "FCN, class-weight H",
            "HED-like"} <= nets
    assert any(n.startswith("template ") for n in nets)
    assert all(r["target"] for r in rows if r["section"] == "end-to-end" and not r["family"].startswith("template"))
    assert all(not r["target"] for r in rows if r["family"].startswith("template"))
    assert any(r["family"] == "sigmoid vs seed" and r["target"] for r in rows)
    for r in rows:
        assert float(r["ours_ms"]) > 0 and float(r["native_ms"]) > 0
        assert r["target_ok"] in ("", "met", "MISSED")
    assert "End to end" in out and "Per layer" in out and "targets:" in out


def test_bench_avx2_option_reruns_with_the_avx512_paths_off(tmp_path):
    out, rows = run_bench(tmp_path, "--avx2", "--tiny", "--section", "layers", "--only", "center")
    assert "AVX2 emulation" in out and "OPENBLAS_CORETYPE=Haswell" in out
    assert rows and all(r["family"] == "center" for r in rows)
