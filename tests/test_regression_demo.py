"""The regression family's part of `caffe-losses demo` ("age"; the shared small run: tests/conftest.py)."""

from caffe_losses.experiments import report

from demo_run import figures, layers, metrics, rows


def test_rows_and_figures(demo_run):
    out, _, doc = demo_run
    age = rows(doc, "age")
    assert {r["loss"] for r in age if r["role"] == "purpose"} == {
        "SmoothL1Loss", "EuclideanLoss (native)", "SmoothL1Loss (on Expectation)", "MeanVarianceLoss"}
    assert metrics(doc, "age") == 4 * [("purpose", "MAE in years")] + [("reference", "MAE in years")]
    assert {r["baseline"] for r in age if r["role"] == "purpose"} == \
        {"EuclideanLoss (native), 1-output linear head"}
    assert figures(doc, "age") == {"age/curves.png", "age/predictions.png"}
    assert report.markdown_table(age) in (out / "results.md").read_text()


def test_the_baseline_is_a_native_euclidean_loss_on_a_linear_head(demo_run):
    base = layers(demo_run[0] / "age" / "baseline" / "train_val.prototxt")
    assert base["loss"].type == "EuclideanLoss" and "pred01" not in base and "pred_age" not in base
    assert list(base["fc1"].top) == ["pred_age"] and base["fc1"].inner_product_param.num_output == 1
