"""The Dockerfile and its scripts, checked without an engine.

`make check-docker` (run by CI after the tests) builds both images and uses
them; here: hadolint, the shape that keeps the runtime images lean and the
build a thin wrapper over the same install script the suite uses, and the
shell scripts' syntax.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
SCRIPTS = ["install_caffe.sh", "docker_base.sh", "docker_builder.sh", "check_docker.sh", "gpu_check.sh"]


def stages():
    text = open(DOCKERFILE).read()
    return dict(re.findall(r"^FROM \S+ AS ([\w-]+)\n(.*?)(?=^FROM |\Z)", text, re.M | re.S))


def test_hadolint_passes():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    proc = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_builders_use_the_install_script_and_install_the_package_as_users_do():
    s = stages()
    assert "tools/install_caffe.sh --deps-only --venv /opt/venv" in s["build-deps"]
    assert "tools/install_caffe.sh --venv /opt/venv" in s["build-cpu"]
    assert "tools/install_caffe.sh --cuda --venv /opt/venv" in s["build-cuda"]
    for name in ("build-cpu", "build-cuda"):
        assert "tools/docker_builder.sh /src /opt/venv" in s[name]
    builder = open(os.path.join(ROOT, "tools", "docker_builder.sh")).read()
    assert re.search(r'pip install -q "\$SRC\[demo\]"', builder)
    assert not re.search(r"pip install[^\n]*(-e |--editable)", open(DOCKERFILE).read() + builder)


def test_runtime_images_hold_no_build_tools_and_no_ca_secret():
    s = stages()
    runtime = s["runtime"]
    packages = re.findall(r"\b(lib[\w.+-]+|python3[\w.-]*)\b", runtime.split("apt-get install", 1)[1])
    assert packages and not [p for p in packages if p.endswith("-dev")], packages
    for tool in ("g++", "cmake", "ninja-build", "protobuf-compiler", "install_caffe.sh"):
        assert tool not in runtime
    for name in ("runtime", "cpu", "cuda"):
        assert "ca_bundle" not in s[name] and "PIP_CERT" not in s[name], name
    for name, builder in (("cpu", "build-cpu"), ("cuda", "build-cuda")):
        assert f"COPY --from={builder} /opt/caffe /opt/caffe" in s[name]
        assert f"COPY --from={builder} /opt/venv /opt/venv" in s[name]
        assert "runtime-packages.txt dpkg-query" in s[name], "the image checks it has every library its build loads"
        assert "USER" not in s[name], f"{name}: runs as the runtime stage's user"
    assert re.search(r"^USER 1000:1000$", runtime, re.M), "the images run as a non-root user"


def test_every_copied_path_exists_and_the_context_leaves_out_the_heavy_folders():
    text = open(DOCKERFILE).read()
    for src in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.M):
        for path in src.split():
            assert os.path.exists(os.path.join(ROOT, path)), path
    ignored = open(os.path.join(ROOT, ".dockerignore")).read().split()
    for heavy in (".git", ".venv", ".venv-*", "demo_out/"):
        assert heavy in ignored, heavy


@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_script_syntax(script):
    proc = subprocess.run(["bash", "-n", os.path.join(ROOT, "tools", script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
