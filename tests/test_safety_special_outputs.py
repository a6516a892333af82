"""An output is a regular file or a new path: never a symbolic link, device node, FIFO or socket.

Issue 19: the atomic writer renamed its temporary file over whatever sat at
the output path (as root, ``make-h -o /dev/null`` replaced the device node
with a file). Every node here is made by the test in its own temporary
folder (``os.mkfifo``, ``os.mknod``, a bound socket); nothing touches /dev.
"""

import os
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

from caffe_losses.files.safety import OutputError, check_output, not_a_file, output_file

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")


def special_nodes(folder):
    """{kind: path} of a FIFO, a socket, a symlink to a file, a dangling symlink and (as root) a
    character device (1, 3: the numbers of /dev/null), all made inside ``folder``."""
    folder = str(folder)
    nodes = {}
    nodes["fifo"] = os.path.join(folder, "fifo.out")
    os.mkfifo(nodes["fifo"])
    nodes["socket"] = os.path.join(folder, "sock.out")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(nodes["socket"])
    sock.close()
    target = os.path.join(folder, "precious.txt")
    with open(target, "w") as f:
        f.write("the user's file\n")
    nodes["symlink"] = os.path.join(folder, "link.out")
    os.symlink(target, nodes["symlink"])
    nodes["dangling"] = os.path.join(folder, "dangling.out")
    os.symlink(os.path.join(folder, "nowhere", "x"), nodes["dangling"])
    if os.getuid() == 0:
        nodes["device"] = os.path.join(folder, "null.out")
        os.mknod(nodes["device"], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return nodes


def snapshot(folder):
    """What sits in ``folder``: {name: (file type, bytes of a regular file or link target)}."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                content = f.read()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = st.st_rdev
        out[name] = (stat.S_IFMT(st.st_mode), content)
    return out


KIND_WORDS = {"fifo": "is a FIFO", "socket": "is a socket", "symlink": "is a symbolic link",
              "dangling": "is a symbolic link", "device": "is a character device"}


def test_check_output_refuses_every_node_that_is_not_a_regular_file(tmp_path):
    nodes = special_nodes(tmp_path)
    before = snapshot(tmp_path)
    assert "device" in nodes or os.getuid() != 0
    for kind, path in nodes.items():
        with pytest.raises(OutputError, match=rf"^make-h: -o {path} {KIND_WORDS[kind]}.*refusing to write"):
            check_output(path, option="-o", tool="make-h")
        with pytest.raises(OutputError, match=KIND_WORDS[kind]):
            with output_file(path, option="-o") as tmp:
                raise AssertionError(f"output_file yielded {tmp} for a {kind}")
    assert snapshot(tmp_path) == before
    # a regular file and a new path are fine; a symlinked *folder* on the way is the user's layout
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "linked_dir")
    for path in (tmp_path / "precious.txt", tmp_path / "new.bin", tmp_path / "linked_dir" / "x.bin"):
        assert not_a_file(path) is None
    with output_file(tmp_path / "linked_dir" / "x.bin") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"ok")
    assert (tmp_path / "real" / "x.bin").read_bytes() == b"ok"


def test_output_file_refuses_a_node_that_appears_while_writing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="is a FIFO"):
        with output_file(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"data")
            os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and os.listdir(tmp_path) == ["out.bin"]


NET = textwrap.dedent("""\
    name: "tiny"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
            param { lr_mult: 0 } inner_product_param { num_output: 1 bias_term: false } }
    """)


def commands(folder, out):
    """The writers of issue 19, each aimed at ``out``: make-h -o, net-surgery --output, migrate --force."""
    folder = str(folder)
    if not os.path.exists(os.path.join(folder, "net.prototxt")):
        with open(os.path.join(folder, "net.prototxt"), "w") as f:
            f.write(NET)
    return {"make-h": [CLI, "make-h", "--identity", "3", "-o", out],
            "net-surgery": [CLI, "net-surgery", "--model", "net.prototxt", "--layer", "fc",
                            "--values", "0:3", "--output", out],
            "migrate": [CLI, "migrate", "net.prototxt", "-o", out, "--force"]}


def test_every_tool_refuses_special_outputs_and_leaves_them_as_they_were(tmp_path):
    nodes = special_nodes(tmp_path)
    for tool, argv in commands(tmp_path, "plain.out").items():     # the commands work on a plain path
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (tool, proc.stderr)
        assert os.path.isfile(tmp_path / "plain.out")
        os.unlink(tmp_path / "plain.out")
    before = snapshot(tmp_path)
    for kind, path in nodes.items():
        for tool, argv in commands(tmp_path, path).items():
            proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert proc.returncode != 0 and proc.returncode > 0, (tool, kind, proc.returncode, proc.stderr)
            assert path in proc.stderr and KIND_WORDS[kind] in proc.stderr, (tool, kind, proc.stderr)
            assert "Traceback" not in proc.stderr and "wrote" not in proc.stdout, (tool, kind)
            assert snapshot(tmp_path) == before, (tool, kind)
