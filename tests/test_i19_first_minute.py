"""Issue 19, a pip user's first minute: pycaffe missing, a closed pipe, --help text.

Each command runs in its own process with the real package; "pycaffe
missing" is made real by a sitecustomize that takes the folder holding
pycaffe off ``sys.path`` (what ``pip install .`` before setting up pycaffe
gives), or blocks pycaffe's own import of skimage.
"""

import os
import subprocess
import sys
import textwrap

import pytest

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
TEMPLATE = "infogain_digits_source"

HIDE_CAFFE = """
import os, sys
sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p or '.', 'caffe', '__init__.py'))]
"""
HIDE_SKIMAGE = """
import sys
sys.modules['skimage'] = None
"""


def _hidden_env(tmp_path, code):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(code))
    env = dict(os.environ, GLOG_minloglevel="2")
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and not os.path.isfile(os.path.join(p, "caffe", "__init__.py"))])
    return env


def _run(args, cwd, env=None, **kw):
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


def test_the_hiding_really_hides_caffe(tmp_path):
    env = _hidden_env(tmp_path, HIDE_CAFFE)
    proc = subprocess.run([sys.executable, "-c", "import caffe_losses.glue.params; import caffe"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'caffe'" in proc.stderr, proc.stderr


@pytest.mark.parametrize("hide, missing", [(HIDE_CAFFE, "No module named 'caffe'"),
                                           (HIDE_SKIMAGE, "skimage")], ids=["caffe", "skimage"])
def test_template_check_train_without_pycaffe_say_one_line(tmp_path, hide, missing):
    env = _hidden_env(tmp_path, hide)
    work = tmp_path / "work"
    work.mkdir()
    proc = _run(["template", TEMPLATE, "--out", "sub/t"], work, env)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("caffe-losses template: needs pycaffe"), lines
    assert missing in lines[0] and "README.md, section 'Into the Caffe you already have'" in lines[0], lines
    assert os.listdir(work) == [], "a failed template leaves nothing behind"
    # the rerun with pycaffe works, and makes a folder that check and train would read
    ok = _run(["template", TEMPLATE, "--out", "sub/t"], work)
    assert ok.returncode == 0, ok.stderr
    folder = work / "sub" / "t"
    before = {name: (folder / name).read_bytes() for name in ("solver.prototxt", "train_val.prototxt")}
    for args in (["check", "solver.prototxt"], ["train", "solver.prototxt", "--max-iter", "1"]):
        proc = _run(args, folder, env)
        assert proc.returncode == 2, proc
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"caffe-losses {args[0]}: needs pycaffe"), proc.stderr
        assert missing in lines[0] and "Into the Caffe you already have" in lines[0]
    assert before == {name: (folder / name).read_bytes() for name in before}
    assert not [n for n in os.listdir(folder) if "_iter_" in n or n.endswith(".png")]


def test_template_into_a_new_folder_leaves_no_temporary_folder(tmp_path):
    proc = _run(["template", TEMPLATE, "--out", "t"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["t"]
    assert oct(os.stat(tmp_path / "t").st_mode & 0o077) != "0o0", "the folder is not left private (mkdtemp's 0700)"


def test_list_into_a_pipe_closed_early(tmp_path):
    proc = subprocess.run(f"'{CLI}' template --list | head -1", shell=True, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    assert proc.stderr == "", proc.stderr
    # a pipe closed before anything was read: still no traceback
    reader = subprocess.Popen([CLI, "template", "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()
    _, err = reader.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err
    assert reader.returncode == 1


def test_help_is_plain_text():
    from caffe_losses.cli import SUBCOMMANDS
    for args in [["--help"]] + [[name, "--help"] for name in SUBCOMMANDS]:
        proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "``" not in proc.stdout, (args, [ln for ln in proc.stdout.splitlines() if "``" in ln])
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                          "plot_features.py")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "``" not in proc.stdout and "hdf5_data_param" in proc.stdout, proc


def test_messages_name_the_installed_commands_not_the_clones_scripts(tmp_path):
    """A pip install has no tools/*.py: messages and --help name `caffe-losses make-h`."""
    import re
    pkg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "caffe_losses")
    script = re.compile(r"(tools/)?(make_infogain_h|net_surgery|make_pos_weight|plot_features|migrate_net)\.py")
    found = []
    for folder, _, files in os.walk(pkg):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    found += [f"{path}:{i + 1}" for i, line in enumerate(f) if script.search(line)]
    assert found == []
    proc = subprocess.run([CLI, "make-h", "--help"], capture_output=True, text=True, timeout=120)
    assert "caffe-losses make-h --identity" in proc.stdout and "make_infogain_h" not in proc.stdout
    (tmp_path / "bad.binaryproto").write_bytes(b"not a blob \xff\xff\xff\x07")
    proc = _run(["make-h", "--show", "bad.binaryproto"], tmp_path)
    assert proc.returncode != 0 and "caffe-losses make-h" in proc.stderr and "tools/" not in proc.stderr, proc
