"""The wheel, installed as a user with their own Caffe would install it.

Builds the wheel from a clean copy of the tree (``pip wheel``), installs it
into fresh virtualenvs that see the project's pycaffe only through a
``.pth`` file pointing at pycaffe's folder (as an existing Caffe install
would be seen; nothing else of ``.venv``), with pycaffe's own Python
dependencies from PyPI, and runs a user's first steps from there:
``template --list``, ``template NAME --out DIR``, ``check``, ``train``,
Caffe's own ``caffe train`` with ``PYTHONPATH`` set as the README says,
``make-h``; on the base install (no extras) and, for ``demo``, with the
demo extra.

The virtualenvs live in ``.venv-wheel/`` and are reused: the package is
reinstalled when the wheel's contents change, a virtualenv is rebuilt when
the wheel's requirements change.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENVS = os.path.join(ROOT, ".venv-wheel")
# pycaffe's own imports (python/caffe/io.py and friends), from PyPI
PYCAFFE_DEPS = ["six", "scikit-image", "scipy", "numpy", "protobuf"]


def caffe_build():
    """The project's Caffe build, as tools/install_caffe.sh recorded it in the venv."""
    env_file = os.path.join(sys.prefix, "caffe-build.env")
    with open(env_file) as f:      # missing: the set-up did not run (make setup): fail, never skip
        return dict(line.strip().split("=", 1) for line in f if "=" in line)


def run(cmd, cwd, env, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def clean_env(extra=None):
    """The environment of a user's shell: none of the test run's PYTHONPATH or venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    env["GLOG_minloglevel"] = "2"
    env.update(extra or {})
    return env


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
        return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]
    except (OSError, subprocess.CalledProcessError):   # no git: the tree minus build outputs
        skip = (".git", ".venv", "build", "demo_out", ".pytest_cache")
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(skip) and not d.endswith(".egg-info")
                       and d != "__pycache__"]
            files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
        return files


def build_wheel(workdir):
    """``pip wheel`` of a clean copy of the tree (no stale build/ folder can leak in)."""
    src = os.path.join(workdir, "src")
    for rel in tracked_files():
        os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(src, rel))
    dist = os.path.join(workdir, "dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src], workdir, clean_env())
    (wheel,) = [os.path.join(dist, n) for n in os.listdir(dist) if n.endswith(".whl")]
    return wheel


def wheel_keys(wheel):
    """(contents key, requirements key): RECORD holds every file's sha256; METADATA the requirements."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        record = z.read(next(n for n in names if n.endswith(".dist-info/RECORD")))
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = "\n".join(sorted(line for line in meta.splitlines() if line.startswith("Requires-Dist")))
    return hashlib.sha256(record).hexdigest(), hashlib.sha256(requires.encode()).hexdigest()


def venv_with(wheel, name, extra, build):
    """``.venv-wheel/<name>``: a fresh virtualenv with the wheel (``[extra]``), pycaffe by .pth."""
    venv = os.path.join(VENVS, name)
    py = os.path.join(venv, "bin", "python")
    contents, requires = wheel_keys(wheel)
    stamp = os.path.join(venv, ".wheel-stamp")
    have = open(stamp).read().split() if os.path.isfile(stamp) else []
    env = clean_env()
    if have[1:2] != [requires] or not os.path.isfile(py):
        shutil.rmtree(venv, ignore_errors=True)
        # the interpreter pycaffe was built for, outside any virtualenv
        run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv], ROOT, env)
        run([py, "-m", "pip", "install", "-q", *PYCAFFE_DEPS], ROOT, env)
        site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], ROOT, env).stdout.strip()
        with open(os.path.join(site, "pycaffe.pth"), "w") as f:
            f.write(os.path.join(build["CAFFE_ROOT"], "python") + "\n")
        have = []
    if have[:1] != [contents]:
        target = wheel + (f"[{extra}]" if extra else "")
        run([py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel], ROOT, env)
        run([py, "-m", "pip", "install", "-q", target], ROOT, env)
        with open(stamp, "w") as f:
            f.write(f"{contents} {requires}\n")
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    build = caffe_build()
    os.makedirs(VENVS, exist_ok=True)
    with open(os.path.join(VENVS, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # two test runs share the cached virtualenvs
        wheel = build_wheel(str(tmp_path_factory.mktemp("wheel")))
        base = venv_with(wheel, "base", None, build)
        demo = venv_with(wheel, "demo", "demo", build)
    return {"wheel": wheel, "base": base, "demo": demo, "build": build}


def tool(venv, *args):
    return [os.path.join(venv, "bin", "caffe-losses"), *args]


def test_wheel_carries_what_the_commands_read(installed):
    with zipfile.ZipFile(installed["wheel"]) as z:
        names = set(z.namelist())
    templates = sorted(d for d in os.listdir(os.path.join(ROOT, "prototxt_templates"))
                       if os.path.isdir(os.path.join(ROOT, "prototxt_templates", d)))
    for name in templates:
        for f in ("train_val.prototxt", "solver.prototxt", "template.yaml"):
            assert f"caffe_losses/prototxt_templates/{name}/{f}" in names
    assert "caffe_losses/data/digits.csv.gz" in names


def test_base_install_first_steps(installed, tmp_path):
    venv, build = installed["base"], installed["build"]
    env = clean_env()
    where = run([os.path.join(venv, "bin", "python"), "-c",
                 "import caffe, caffe_losses, sys; print(caffe_losses.__file__); print(caffe.__file__); "
                 "print(sys.modules.get('matplotlib'))"], tmp_path, env).stdout.split("\n")
    assert where[0].startswith(venv) and where[1].startswith(build["CAFFE_ROOT"])

    listing = run(tool(venv, "template", "--list"), tmp_path, env).stdout
    assert "infogain_digits_source" in listing and "center_loss_lenetpp" in listing

    # every template's data is written on the base install (small sizes; the CLI below for one)
    prepared = run([os.path.join(venv, "bin", "python"), "-c",
                    "import os, shutil\n"
                    "from caffe_losses.nets.templates import list_templates, prepare_template, template_root\n"
                    "for name in list_templates():\n"
                    "    shutil.copytree(os.path.join(template_root(), name), name)\n"
                    "    prepare_template(name, small=True)\n"
                    "    print(name)\n"], tmp_path, env).stdout.split()
    assert len(prepared) == len(listing.strip().splitlines()) >= 10

    out = run(tool(venv, "template", "infogain_digits_source", "--out", "my_infogain"), tmp_path, env).stdout
    assert "wrote" in out
    folder = tmp_path / "my_infogain"
    run(tool(venv, "check", "solver.prototxt"), folder, env)

    # a few iterations, base install: no matplotlib, no traceback, the snapshot written
    proc = run(tool(venv, "train", "solver.prototxt", "--max-iter", "4", "--no-progress"), folder, env)
    assert "Traceback" not in proc.stderr
    snapshots = [f for f in os.listdir(folder / "snapshots") if f.endswith(".caffemodel")] \
        if (folder / "snapshots").is_dir() else []
    snapshots += [f for f in os.listdir(folder) if f.endswith("_iter_4.caffemodel")]
    assert snapshots, os.listdir(folder)

    # Caffe's own tool, PYTHONPATH set as the README tells an existing user
    site = run([os.path.join(venv, "bin", "python"), "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).stdout.strip()
    solver = (folder / "solver.prototxt").read_text()
    (folder / "solver_short.prototxt").write_text(
        "\n".join(line for line in solver.splitlines() if not line.strip().startswith(("max_iter", "snapshot")))
        + "\nmax_iter: 3\nsnapshot_prefix: \"caffe_tool\"\n")
    caffe_env = clean_env({"PYTHONPATH": f"{os.path.join(build['CAFFE_ROOT'], 'python')}:{site}",
                           "LD_LIBRARY_PATH": build["CAFFE_LIBDIRS"]})
    run([os.path.join(build["CAFFE_BUILD"], "tools", "caffe"), "train", "-solver", "solver_short.prototxt"],
        folder, caffe_env)
    assert (folder / "caffe_tool_iter_3.caffemodel").is_file()

    proc = run(tool(venv, "make-h", "--labels", "data/train.h5", "-o", "H_from_labels.binaryproto"), folder, env)
    assert (folder / "H_from_labels.binaryproto").is_file() and "wrote" in proc.stdout

    # a command that needs an extra says which, in one line
    proc = run(tool(venv, "demo", "--only", "infogain", "--small"), tmp_path, env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("caffe-losses demo: needs matplotlib, which the base install leaves out: "
                                   "pip install 'caffe-losses[demo]'")


def test_demo_extra_runs_the_demo(installed, tmp_path):
    venv = installed["demo"]
    proc = run(tool(venv, "demo", "--only", "infogain", "--small", "--no-progress", "--out", "demo_out"),
               tmp_path, clean_env())
    assert (tmp_path / "demo_out" / "results.md").is_file(), proc.stdout
