"""The margin demo recipe: its verification metric, its data split, its baselines, one small run."""

import os

import numpy as np
import pytest

from caffe_losses.experiments import runner
from caffe_losses.losses.margin import data, experiment
from caffe_losses.nets.prototxt import read_net_param


def brute_force(features, labels, far):
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    pairs = [(float(f[i] @ f[j]), labels[i] == labels[j]) for i in range(len(f)) for j in range(i + 1, len(f))]
    genuine = [s for s, g in pairs if g]
    impostor = [s for s, g in pairs if not g]
    wins = sum((g > i) + 0.5 * (g == i) for g in genuine for i in impostor)
    accepted = sorted(impostor)[min(len(impostor) - 1, int(np.ceil((1 - far) * len(impostor))))]
    return wins / (len(genuine) * len(impostor)), np.mean([g > accepted for g in genuine])


@pytest.mark.parametrize("seed", [0, 1])
def test_verification_metric_against_brute_force(seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 3, 40)
    features = rng.randn(40, 4) + labels[:, None] * 0.7
    features[5] = features[3]                            # tied scores are counted half
    auc, tar = experiment.verification(features, labels, far=0.1)
    ref_auc, ref_tar = brute_force(features, labels, 0.1)
    assert auc == pytest.approx(ref_auc, abs=1e-12) and tar == pytest.approx(ref_tar)
    assert 0.5 < auc < 1
    perfect = np.eye(3)[labels] + 1e-3 * rng.randn(40, 3)
    assert experiment.verification(perfect, labels)[0] == pytest.approx(1.0)


def test_data_split_trains_on_0_to_6_and_verifies_7_to_9(tmp_path):
    info = data.prepare_margin(str(tmp_path))
    import h5py
    with h5py.File(tmp_path / "data" / "train.h5") as f:
        train = f["label"][:]
    with h5py.File(tmp_path / "data" / "test.h5") as f:
        test = f["label"][:]
    assert set(train.astype(int)) == set(range(7)) and set(test.astype(int)) == {7, 8, 9}
    assert info["n_train"] == len(train) and info["n_test"] == len(test) == 533
    assert 533 % 41 == 0                                 # the template's test batches cover it exactly


def test_small_plan_runs_all_three_nets(tmp_path):
    jobs = experiment.plan(str(tmp_path / "margin"), small=True, seeds=(1701, 1702))
    assert sorted({j.variant for j in jobs}) == ["center", "ours", "softmax"]
    layers = {v: [(l.type, l.python_param.layer) for l in read_net_param(
        os.path.join(str(tmp_path / "margin"), folder, "train_val.prototxt")).layer]
              for v, folder in (("ours", "ours"), ("softmax", "baseline"), ("center", "baseline_center"))}
    assert ("Python", "MarginProduct") in layers["ours"]
    assert ("InnerProduct", "") in layers["softmax"] and all(l != "MarginProduct" for _, l in layers["softmax"])
    assert ("Python", experiment.center_layer()) in layers["center"]
    results = [runner.run_job(j) for j in jobs if j.seed == 1701]
    for r in results:
        assert set(r["final"]) == {"ROC AUC", "TAR@FAR=1e-2"}
        assert 0 <= r["final"]["TAR@FAR=1e-2"] <= 1 and 0.3 < r["final"]["ROC AUC"] <= 1
    results += [runner.run_job(j) for j in jobs if j.seed == 1702]
    rows, figures = experiment.summarize(results, str(tmp_path / "margin"), small=True)
    assert [r["role"] for r in rows] == ["purpose", "trade-off"] * 2
    assert {r["baseline"] for r in rows} == set(experiment.BASELINES.values())
    assert all(os.path.exists(f) for f in figures)
