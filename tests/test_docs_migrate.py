"""docs/migrate.md runs as printed: its files are written, its commands run, their output compared.

In a ``console`` block, ``$ `` starts a command and the lines after it are
its output (stdout and stderr); ``...`` in a line stands for any text, and a
line that is only ``...`` for any output.  ``<!-- file: NAME -->`` before a
fenced block writes the block to NAME.  The page's ``face_model.caffemodel``
is the user's model trained with caffe-face: made here as caffe-face writes
one (its layer carries ``center_loss_param``, field 147 of caffe-face's proto).
"""

import os
import re
import subprocess
import sys

import numpy as np

from caffe.proto import caffe_pb2

from test_migrate import _varint, blob, with_fork_field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "migrate.md")


def blocks(text):
    """(kind, name, body) for each fenced block: kind 'file' (with its name), 'console' or 'text'."""
    out, pending = [], None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.fullmatch(r"<!-- file: (\S+) -->", line.strip())
        if m:
            pending = m.group(1)
        elif line.startswith("```"):
            lang = line[3:].strip()
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            body = "\n".join(lines[i + 1:j]) + "\n"
            out.append(("file", pending, body) if pending else ("console" if lang == "console" else "text", None, body))
            pending, i = None, j
        i += 1
    return out


def commands(body):
    cmds = []
    for line in body.splitlines():
        if line.startswith("$ "):
            cmds.append((line[2:], []))
        else:
            cmds[-1][1].append(line)
    return cmds


def matches(expected, got):
    if expected == ["..."]:
        return True
    if len(expected) != len(got):
        return False
    return all(re.fullmatch(".*".join(map(re.escape, e.split("..."))), g) for e, g in zip(expected, got))


def caffe_face_model(path):
    rng = np.random.RandomState(0)
    model = caffe_pb2.NetParameter()
    for name, shapes in (("ip1", [(2, 784), (2,)]), ("ip2", [(10, 2), (10,)])):
        model.layer.add(name=name, type="InnerProduct").blobs.extend([blob(rng.randn(*s)) for s in shapes])
    face = caffe_pb2.LayerParameter(name="center_loss", type="CenterLoss")
    face.blobs.extend([blob(rng.randn(10, 2))])
    filler = b"\x0a\x06xavier"
    model.layer.append(with_fork_field(face, 147, b"\x08\x0a\x12" + _varint(len(filler)) + filler))
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def test_migrate_page_runs_as_printed(tmp_path):
    caffe_face_model(tmp_path / "face_model.caffemodel")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               GLOG_minloglevel="2")
    found = blocks(open(DOC).read())
    ran = 0
    for kind, name, body in found:
        if kind == "file":
            (tmp_path / name).write_text(body)
        elif kind == "console":
            for cmd, expected in commands(body):
                proc = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                got = proc.stdout.rstrip("\n").splitlines()
                assert matches(expected, got), f"$ {cmd}\nexpected:\n" + "\n".join(expected) + \
                    "\ngot:\n" + "\n".join(got)
                ran += 1
    assert ran >= 8
    # the page's "The layer becomes:" is what was written
    layer = next(body for kind, _, body in found if kind == "text" and 'layer: "CenterLoss"' in body)
    assert layer in (tmp_path / "face_migrated.prototxt").read_text()


def test_readme_migrate_example_is_the_page_s():
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("### `migrate`"):]
    example = next(body for kind, _, body in blocks(section) if kind == "text")
    page = open(DOC).read()
    for line in example.splitlines():
        assert line in page, line
