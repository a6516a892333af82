"""`caffe-losses demo`: the main job end to end (tiny sizes), its nets, files and folder rules.

What every family's part must have is checked here, for each family of the
registry (``caffe_losses.losses.DEMOS``); each family's own rows, figures and
baseline nets are checked by its tests/test_<family>_demo.py, on the same run
(the session's ``demo_run``, tests/conftest.py): a new family edits nothing here.
"""

import json
import os
import signal
import subprocess
import time

import numpy as np

from caffe_losses.experiments import report, runner
from caffe_losses.losses import DEMOS

from demo_run import CLI, demo, figures, layers, rows

FIRST = next(iter(DEMOS))      # the family the folder-rule tests run alone (any would do)


def test_prints_the_table_the_rule_and_the_summary(demo_run):
    out, stdout, doc = demo_run
    assert "| loss" in stdout and "| verdict" in stdout
    assert doc["rule"] in stdout and "t = 12.706 (Student's t, 97.5%, 1 degree(s) of freedom)" in doc["rule"]
    assert "purpose metrics:" in stdout and "checks:" in stdout
    assert f"results: {out / 'results.json'}" in stdout


def test_results_file_has_the_structure_and_every_recipe(demo_run):
    out, _, doc = demo_run
    report.check_results(doc)      # recomputes every mean, difference and verdict from the seeds
    assert doc["small"] is True and doc["seeds"] == list(runner.SMALL_SEEDS)
    assert doc["families"] == list(DEMOS)
    assert {r["family"] for r in doc["rows"]} == set(DEMOS)
    for family in DEMOS:          # each recipe says what it is for
        assert any(r["role"] == "purpose" for r in rows(doc, family)), family
    for r in doc["rows"]:
        assert r["verdict"] in report.VERDICTS + ("expected gain", "expected cost", "reference")
        if r["role"] != "reference":
            assert len(r["values"]) == len(r["baseline_values"]) == 2
            assert all(np.isfinite(r["values"])) and all(np.isfinite(r["baseline_values"]))
    # results.md and results.csv come from the same rows
    md = (out / "results.md").read_text()
    for family in DEMOS:
        assert report.markdown_table(rows(doc, family)) in md, family
    assert len((out / "results.csv").read_text().splitlines()) == len(doc["rows"]) + 1


def test_pictures_exist_and_are_listed(demo_run):
    out, stdout, doc = demo_run
    for family in DEMOS:      # each family's own list: its tests/test_<family>_demo.py
        assert f"{family}/curves.png" in figures(doc, family), family
    assert set(doc["figures"]) == set().union(*(figures(doc, family) for family in DEMOS))
    for rel in doc["figures"]:
        path = out / rel
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10000, rel
        assert f"figure: {path}" in stdout


def test_baselines_are_the_plain_native_losses(demo_run):
    out = demo_run[0]
    for family in DEMOS:      # each family's baseline in detail: its tests/test_<family>_demo.py
        bases = sorted((out / family).rglob("baseline/train_val.prototxt"))
        assert bases, family
        for path in bases:
            ours = [layer.name for layer in layers(path).values()
                    if layer.type == "Python" and layer.python_param.module == "caffe_losses"]
            assert ours == [], path
        assert any(layer.type == "Python" and layer.python_param.module == "caffe_losses"
                   for path in (out / family).rglob("train_val.prototxt") if "baseline" not in path.parts
                   for layer in layers(path).values()), family
    # each seed has its solver; the demo keeps no snapshots
    folders = {p.parent for p in out.rglob("solver_seed*.prototxt")}
    assert len(folders) >= 2 * len(DEMOS)
    for folder in folders:
        assert sorted(p.name for p in folder.glob("solver_seed*.prototxt")) == \
            [f"solver_seed{s}.prototxt" for s in runner.SMALL_SEEDS], folder
    assert not list(out.rglob("*.caffemodel")) or \
        [p.name for p in out.rglob("*.caffemodel")] == ["init_weights.caffemodel"]


def test_refuses_a_folder_that_holds_anything_and_changes_nothing(tmp_path):
    out = tmp_path / "mine"
    (out / FIRST).mkdir(parents=True)
    (out / FIRST / "notes.txt").write_text("my notes")
    (out / "model.py").write_text("print('mine')")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in out.rglob("*")}
    proc = demo("--only", FIRST, "--out", str(out))
    assert proc.returncode == 2
    assert f"--out {out} is not empty" in proc.stderr and "never replaces files" in proc.stderr
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in out.rglob("*")}
    assert after == before
    (tmp_path / "file").write_text("x")
    proc = demo("--only", FIRST, "--out", str(tmp_path / "file"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_default_folder_is_new_each_run_and_workers_do_not_change_numbers(tmp_path):
    parent = tmp_path / "demo_out"
    parent.mkdir()
    (parent / "keep.txt").write_text("mine")
    runs, seen = [], set()
    for jobs in ("1", "2"):
        proc = demo("--only", FIRST, "--jobs", jobs, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (new,) = {p for p in parent.iterdir() if p.is_dir()} - seen
        seen.add(new)
        assert f"results: {new / 'results.json'}" in proc.stdout
        runs.append(json.loads((new / "results.json").read_text()))
    assert (parent / "keep.txt").read_text() == "mine"
    assert runs[0]["workers"] == 1 and runs[1]["workers"] == 2
    assert [r["values"] for r in runs[0]["rows"]] == [r["values"] for r in runs[1]["rows"]]
    assert [r["baseline_values"] for r in runs[0]["rows"]] == [r["baseline_values"] for r in runs[1]["rows"]]


def test_bad_arguments(tmp_path):
    proc = demo("--seeds", "1", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "--seeds must be at least 2" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_ctrl_c_stops_the_workers(tmp_path):
    # the full-size demo takes long enough to be interrupted while training
    proc = subprocess.Popen([CLI, "demo", "--jobs", "2", "--out", str(tmp_path / "x")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:
        if line.startswith("== training"):
            break
    time.sleep(3)

    def children():
        found = []
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(proc.pid):
                        found.append(int(pid))
            except (OSError, IndexError):
                pass
        return found
    workers = children()
    assert len(workers) >= 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "no results" in err
    assert not (tmp_path / "x" / "results.json").exists()

    def alive():
        running = []
        for pid in workers:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        running.append(pid)
            except OSError:
                pass
        return running
    deadline = time.time() + 20     # the workers are terminated; give them time to go
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    assert alive() == []
