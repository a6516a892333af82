"""`caffe-losses demo`: the main job end to end (tiny sizes), its nets, files and folder rules."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from caffe_losses.experiments import report, runner
from caffe_losses.losses import DEMOS
from caffe_losses.nets.prototxt import read_net_param

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")


def demo(*args, cwd=None):
    return subprocess.run([CLI, "demo", "--small", "--no-progress", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = demo("--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.json") as f:
        return out, proc.stdout, json.load(f)


def test_prints_the_table_the_rule_and_the_summary(small_run):
    out, stdout, doc = small_run
    assert "| loss" in stdout and "| verdict" in stdout
    assert doc["rule"] in stdout and "t = 12.706 (Student's t, 97.5%, 1 degree(s) of freedom)" in doc["rule"]
    assert "purpose metrics:" in stdout and "checks:" in stdout
    assert f"results: {out / 'results.json'}" in stdout


def test_results_file_has_the_structure_and_every_recipe(small_run):
    out, _, doc = small_run
    report.check_results(doc)      # recomputes every mean, difference and verdict from the seeds
    assert doc["small"] is True and doc["seeds"] == list(runner.SMALL_SEEDS)
    assert doc["families"] == list(DEMOS)
    purpose = {(r["family"], r["loss"]) for r in doc["rows"] if r["role"] == "purpose"}
    assert purpose == {("infogain", "SoftmaxWithInfogainLoss"),
                       ("sigmoid", "WeightedSigmoidCrossEntropyLoss"),
                       ("age", "SmoothL1Loss"), ("age", "EuclideanLoss (native)"),
                       ("age", "SmoothL1Loss (on Expectation)"), ("age", "MeanVarianceLoss"),
                       ("center", "CenterLoss (+ SoftmaxWithLoss)"),
                       ("margin", "MarginProduct + SoftmaxWithLoss")}
    metrics = {r["family"]: [] for r in doc["rows"]}
    for r in doc["rows"]:
        metrics[r["family"]].append((r["role"], r["metric"].split(" (")[0]))
    assert metrics["infogain"] == [("purpose", "recall of the minority digits"), ("check", "accuracy"),
                                   ("trade-off", "recall of the other digits")]
    assert metrics["sigmoid"] == 2 * [("purpose", "average precision"), ("check", "F1 at sigmoid > 0.5"),
                                      ("trade-off", "recall at sigmoid > 0.5"),
                                      ("trade-off", "precision at sigmoid > 0.5")]
    assert metrics["age"] == 4 * [("purpose", "MAE in years")] + [("reference", "MAE in years")]
    assert metrics["center"] == [("purpose", "intra/inter distance ratio of the 2-D features"),
                                 ("check", "accuracy")]
    assert metrics["margin"] == 2 * [("purpose", "ROC AUC, held-out digit pairs by cosine"),
                                     ("trade-off", "TAR@FAR=1e-2, held-out digit pairs")]
    for r in doc["rows"]:
        assert r["verdict"] in report.VERDICTS + ("expected gain", "expected cost", "reference")
        if r["role"] != "reference":
            assert len(r["values"]) == len(r["baseline_values"]) == 2
            assert all(np.isfinite(r["values"])) and all(np.isfinite(r["baseline_values"]))
    age_base = {r["baseline"] for r in doc["rows"] if r["family"] == "age" and r["role"] == "purpose"}
    assert age_base == {"EuclideanLoss (native), 1-output linear head"}
    # results.md and results.csv come from the same rows
    md = (out / "results.md").read_text()
    assert report.markdown_table([r for r in doc["rows"] if r["family"] == "age"]) in md
    assert len((out / "results.csv").read_text().splitlines()) == len(doc["rows"]) + 1


def test_pictures_exist_and_are_listed(small_run):
    out, stdout, doc = small_run
    expected = {"infogain/curves.png", "infogain/recall_per_class.png", "sigmoid/curves.png",
                "sigmoid/precision_recall.png", "sigmoid/edge_maps.png", "age/curves.png",
                "age/predictions.png", "center/curves.png", "center/features.png"}
    assert set(doc["figures"]) == expected
    for rel in expected:
        path = out / rel
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10000, rel
        assert f"figure: {path}" in stdout


def test_baselines_are_the_plain_native_losses(small_run):
    out = small_run[0]

    def layers(path):
        return {layer.name: layer for layer in read_net_param(str(path)).layer}
    base = layers(out / "infogain" / "baseline" / "train_val.prototxt")
    assert base["loss"].type == "SoftmaxWithLoss" and not base["loss"].HasField("python_param")
    assert layers(out / "infogain" / "ours" / "train_val.prototxt")["loss"].python_param.layer == \
        "SoftmaxWithInfogainLoss"
    for task in ("sigmoid_edges", "sigmoid_multilabel"):
        base = layers(out / "sigmoid" / task / "baseline" / "train_val.prototxt")
        assert base["loss"].type == "SigmoidCrossEntropyLoss" and not base["loss"].HasField("python_param")
    assert base_norm(out / "sigmoid" / "sigmoid_edges" / "baseline" / "train_val.prototxt") == "VALID"
    base = layers(out / "age" / "baseline" / "train_val.prototxt")
    assert base["loss"].type == "EuclideanLoss" and "pred01" not in base and "pred_age" not in base
    assert list(base["fc1"].top) == ["pred_age"] and base["fc1"].inner_product_param.num_output == 1
    ours = layers(out / "center" / "ours" / "train_val.prototxt")
    base = layers(out / "center" / "baseline" / "train_val.prototxt")
    assert set(ours) - set(base) == {"center_loss"} and ours["center_loss"].python_param.layer == "CenterLoss"
    # each seed has its solver; the demo keeps no snapshots
    assert sorted(p.name for p in (out / "center" / "ours").glob("solver_seed*.prototxt")) == \
        [f"solver_seed{s}.prototxt" for s in runner.SMALL_SEEDS]
    assert not list(out.rglob("*.caffemodel")) or \
        [p.name for p in out.rglob("*.caffemodel")] == ["init_weights.caffemodel"]


def base_norm(path):
    from caffe.proto import caffe_pb2
    (loss,) = [layer for layer in read_net_param(str(path)).layer if layer.name == "loss"]
    return caffe_pb2.LossParameter.NormalizationMode.Name(loss.loss_param.normalization)


def test_refuses_a_folder_that_holds_anything_and_changes_nothing(tmp_path):
    out = tmp_path / "mine"
    (out / "infogain").mkdir(parents=True)
    (out / "infogain" / "notes.txt").write_text("my notes")
    (out / "model.py").write_text("print('mine')")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in out.rglob("*")}
    proc = demo("--only", "infogain", "--out", str(out))
    assert proc.returncode == 2
    assert f"--out {out} is not empty" in proc.stderr and "never replaces files" in proc.stderr
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in out.rglob("*")}
    assert after == before
    (tmp_path / "file").write_text("x")
    proc = demo("--only", "infogain", "--out", str(tmp_path / "file"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_default_folder_is_new_each_run_and_workers_do_not_change_numbers(tmp_path):
    parent = tmp_path / "demo_out"
    parent.mkdir()
    (parent / "keep.txt").write_text("mine")
    runs, seen = [], set()
    for jobs in ("1", "2"):
        proc = demo("--only", "infogain", "--jobs", jobs, cwd=tmp_path)
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
    # the full-size center runs take long enough to be interrupted while training
    proc = subprocess.Popen([CLI, "demo", "--only", "center", "--jobs", "2", "--out", str(tmp_path / "x")],
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
