"""The Dockerfile: hadolint-clean, and both targets go through install_caffe.sh.

No Docker engine runs here or in CI, so the image itself is not built; what
the Dockerfile runs is the same install script the rest of the suite uses.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")


def test_hadolint_passes():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    proc = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cpu_and_cuda_targets_use_the_install_script():
    text = open(DOCKERFILE).read()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text, re.M | re.S))
    assert set(stages) >= {"base", "cpu", "cuda"}
    assert "tools/install_caffe.sh --venv /opt/venv" in stages["cpu"]
    assert "tools/install_caffe.sh --cuda --venv /opt/venv" in stages["cuda"]
    for name in ("cpu", "cuda"):
        assert re.search(r"^USER 1000", stages[name], re.M), f"{name}: not a non-root user"
        assert "import caffe, caffe_losses" in stages[name]
    # every path the Dockerfile copies exists in the repository
    for src in re.findall(r"^COPY (.+?) \S+$", text, re.M):
        for path in src.split():
            assert os.path.exists(os.path.join(ROOT, path)), path
