"""The benchmark script runs and writes its table (structure only: no timing asserted)."""

import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_quick_run_writes_csv_and_chart(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--only", "smoothl1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "machine copy bandwidth" in proc.stdout and "ours/native" in proc.stdout
    with open(tmp_path / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["size"] for r in rows} >= {"N=256 C=1000", "N=32 C=10"}
    assert all(float(r["ours_ms"]) > 0 and float(r["native_ms"]) > 0 for r in rows)
    assert (tmp_path / "bench.png").stat().st_size > 5000
