"""The guards every tool uses: outputs that are inputs, folders, atomic writes, memory."""

import os
import stat

import numpy as np
import pytest

from caffe_losses.files import safety
from caffe_losses.files.safety import OutputError, check_allocation, check_output, float32_overflow, output_file


def test_refuses_an_output_that_is_an_input_by_any_name(tmp_path):
    src = tmp_path / "labels.npy"
    src.write_bytes(b"mine")
    os.symlink(src, tmp_path / "alias.npy")
    os.link(src, tmp_path / "hard.npy")
    for out in (src, tmp_path / "alias.npy", tmp_path / "hard.npy", f"{tmp_path}/./labels.npy"):
        with pytest.raises(OutputError, match=r"make-h: -o .* is the --labels file of this command"):
            check_output(out, {"--labels": src}, option="-o", tool="make-h")
    assert src.read_bytes() == b"mine"
    check_output(tmp_path / "other.npy", {"--labels": src, "--matrix": None})


def test_refuses_a_folder_and_a_file_in_the_way(tmp_path):
    with pytest.raises(OutputError, match=r"--output .* is a folder: give a file name"):
        check_output(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"is a file, not a folder"):
        check_output(tmp_path / "f" / "out.bin")


def test_writes_atomically_and_only_on_success(tmp_path):
    target = tmp_path / "H.binaryproto"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with pytest.raises(RuntimeError):
        with output_file(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["H.binaryproto"]
    with output_file(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".binaryproto")
        with open(tmp, "wb") as f:
            f.write(b"new")
        assert target.read_bytes() == b"old"         # not yet: renamed after the block
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["H.binaryproto"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    with output_file(tmp_path / "sub" / "dir" / "x.npy") as tmp:
        np.save(tmp, np.eye(2))
    assert np.array_equal(np.load(tmp_path / "sub" / "dir" / "x.npy"), np.eye(2))


def test_check_allocation_names_what_and_how_much(monkeypatch):
    monkeypatch.setattr(safety, "available_memory", lambda: 1000)
    check_allocation(1000, "a buffer", owner="X")
    with pytest.raises(ValueError, match=r"^X: a buffer would need 1\.0 KiB, more than the 1000 bytes "
                                         r"of memory available$"):
        check_allocation(1024, "a buffer", owner="X")
    assert safety.available_memory() == 1000


def test_float32_overflow_finds_the_first_value_float32_makes_inf():
    assert float32_overflow(np.array([1.0, 3.4e38, -3.4e38])) is None
    assert float32_overflow(np.array([[1.0, 0], [0, -1e39]])) == (1, 1)
    assert float32_overflow(np.array([np.inf, np.nan])) is None     # non-finite: another check
    assert float32_overflow(np.float64(2.0 ** 128 - 2.0 ** 103)) == ()
    assert np.isfinite(np.float32(np.nextafter(2.0 ** 128 - 2.0 ** 103, 0)))
