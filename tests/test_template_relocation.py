"""A prepared template folder still trains after it is moved or mounted elsewhere.

Caffe opens every path in a prototxt, and the names inside an HDF5Data list
file, relative to its working directory: the template folder when users run
`cd DIR && caffe train`.  So nothing that template preparation writes may name
the folder it was written in (a folder prepared in one container at /work and
trained in another at /work/t failed on /work/t/data/train.h5).
"""

import os
import shutil
import subprocess
import sys

import pytest
from google.protobuf import text_format

from caffe_losses.nets.templates import TEMPLATE_ROOT, list_templates, prepare_template
from caffe_losses.training import read_solver

BIN = os.path.dirname(sys.executable)


def _prepare(tmp_path, name):
    folder = tmp_path / "prepared_here" / name
    shutil.copytree(os.path.join(TEMPLATE_ROOT, name), folder)
    meta = prepare_template(str(folder), small=True)
    return folder, meta


@pytest.mark.parametrize("name", list_templates())
def test_prepared_files_do_not_name_their_folder(name, tmp_path):
    folder, _ = _prepare(tmp_path, name)
    written = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
    assert any(p.endswith(".txt") for p in written), "expected HDF5Data list files"
    for path in written:    # list files, prototxts, H files, initial weights
        with open(path, "rb") as f:
            content = f.read()
        assert os.fsencode(str(tmp_path)) not in content, f"{os.path.relpath(path, folder)} names {tmp_path}"


@pytest.mark.parametrize("name", ["infogain_digits_source", "age_softmax_surgery"])
def test_moved_folder_trains_both_ways(name, tmp_path):
    """H file (infogain_digits_source) and initial weights (age_softmax_surgery) after a move."""
    prepared, meta = _prepare(tmp_path, name)
    moved = tmp_path / "moved" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(str(prepared), str(moved))
    assert not prepared.exists()

    weights = meta.get("weights")
    cmd = [os.path.join(BIN, "caffe-losses"), "train", "solver.prototxt", "--max-iter", "2", "--no-progress"]
    proc = subprocess.run(cmd + (["--weights", weights] if weights else []), cwd=moved,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prefix = read_solver(str(moved / "solver.prototxt")).snapshot_prefix
    assert (moved / f"{prefix}_iter_2.caffemodel").is_file(), sorted(os.listdir(moved))

    solver = read_solver(str(moved / "solver.prototxt"))
    solver.max_iter = 2
    solver.snapshot_prefix = "caffe_tool"
    (moved / "solver_cli.prototxt").write_text(text_format.MessageToString(solver))
    cmd = [os.path.join(BIN, "caffe"), "train", "-solver", "solver_cli.prototxt"]
    proc = subprocess.run(cmd + (["-weights", weights] if weights else []), cwd=moved,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (moved / "caffe_tool_iter_2.caffemodel").is_file(), sorted(os.listdir(moved))
