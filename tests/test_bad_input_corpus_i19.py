"""Issue 19's data-loss and silently-wrong cases, as bad-input corpus entries.

Each runs in its own process through ``corpus_runner.py`` (as the cases of
``test_bad_input_corpus.py``), with the user's files checked byte for byte
afterwards (``keep``). FIFOs and device nodes are made in the case's own
temporary folder, never in /dev.
"""

import os

import pytest

from corpus_train import NET as TRAIN_NET, _text
from test_bad_input_corpus import run_case

USER_DATA = {"userdata/train.h5": "open(path, 'wb').write(b'the user\\'s real HDF5 data')",
             "userdata/train.txt": "open(path, 'w').write('/data/real/train.h5\\n')"}
KEEP_DATA = ["userdata/train.h5", "userdata/train.txt"]
TEMPLATE = ["template", "infogain_digits_source", "--out", "out", "--force"]
NET = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n'
       'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" param { lr_mult: 0 } '
       'inner_product_param { num_output: 1 bias_term: false } }\n')
NET_FILE = {"net.prototxt": f"open(path, 'w').write({NET!r})"}
SURGERY = ["net-surgery", "--model", "net.prototxt", "--layer", "fc"]
FIFO = {"out.fifo": "os.mkfifo(path)"}
DEVICE = {"null.dev": "import stat; os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))"}
LINKED = {"mine.txt": "open(path, 'w').write('mine')", "link.out": "os.symlink('mine.txt', path)"}

CORPUS = [
    # template --force never writes through a symbolic link
    ("template-force-data-links-to-user-folder",
     {"files": {**USER_DATA, "out/data": "os.symlink('../userdata', path)"}, "keep": KEEP_DATA,
      "cli": TEMPLATE}, ("exit-kept", r"out/data is a symbolic link \(to \.\./userdata\).*nothing was written")),
    ("template-force-train-h5-is-a-link",
     {"files": {**USER_DATA, "out/data/train.h5": "os.symlink('../../userdata/train.h5', path)",
                "out/data/train.txt": "os.symlink('../../userdata/train.txt', path)"},
      "keep": KEEP_DATA, "cli": TEMPLATE},
     ("exit-kept", r"out/data/train\.(h5|txt) is a symbolic link .*nothing was written")),
    ("template-force-solver-is-a-link",
     {"files": {"mine.prototxt": "open(path, 'w').write('# mine')",
                "out/solver.prototxt": "os.symlink('../mine.prototxt', path)"},
      "keep": ["mine.prototxt"], "cli": TEMPLATE}, ("exit-kept", r"out/solver\.prototxt is a symbolic link")),
    # the shared writer: a regular file or a new path, nothing else
    ("make-h-output-fifo", {"files": FIFO, "cli": ["make-h", "--identity", "3", "-o", "out.fifo"]},
     ("exit", r"-o/--output out\.fifo is a FIFO \(named pipe\), not a regular file")),
    ("make-h-output-symlink", {"files": LINKED, "keep": ["mine.txt"],
                               "cli": ["make-h", "--identity", "3", "-o", "link.out"]},
     ("exit-kept", r"link\.out is a symbolic link \(to mine\.txt\)")),
    ("surgery-output-fifo", {"files": {**NET_FILE, **FIFO},
                             "cli": SURGERY + ["--values", "0:3", "--output", "out.fifo"]},
     ("exit", r"--output out\.fifo is a FIFO")),
    ("migrate-force-output-symlink", {"files": {**NET_FILE, **LINKED}, "keep": ["mine.txt", "net.prototxt"],
                                      "cli": ["migrate", "net.prototxt", "-o", "link.out", "--force"]},
     ("exit-kept", r"-o link\.out is a symbolic link")),
    # never a silently wrong number
    ("surgery-values-underflow", {"files": NET_FILE, "keep": ["net.prototxt"],
                                  "cli": SURGERY + ["--values", "1e-50,1e-50,1e-50", "--output", "w.caffemodel"]},
     ("exit-kept", r"--values: 1e-50 \(value 0\) would be 0 in float32")),
    ("pos-weight-extra-quotes", {"files": {"t.npy": "np.save(path, np.eye(4)[:, :1])"},
                                 "cli": ["make-pos-weight", "t.npy", "--extra", 'normalization: "NONE"', "--quiet"]},
     ("exit0", r'^param_str: "\{pos_weight: 3, normalization: \\"NONE\\"\}"$')),
    ("pos-weight-soft-positive-1e-40", {"files": {"t.npy": "np.save(path, np.array([[1e-40], [0], [0], [0]]))"},
                                        "cli": ["make-pos-weight", "t.npy"]},
     ("exit", r"pos_weight would be 4 negatives / 1e-40 positives = 4e\+40, beyond float32.*--max-weight")),
]
POLY_SOLVER = ('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "poly"\npower: 0.9\nmax_iter: 3\n'
               'snapshot_prefix: "snap"\nrandom_seed: 1\nsolver_mode: CPU\n')
CORPUS += [
    ("train-max-iter-beyond-poly",
     {"files": {**_text("net.prototxt", TRAIN_NET.replace("PARAMS", "{sigma: 1}")),
                **_text("solver.prototxt", POLY_SOLVER)}, "keep": ["solver.prototxt"],
      "cli": ["train", "solver.prototxt", "--no-progress", "--no-curve", "--max-iter", "6"]},
     ("exit-kept", r"--max-iter 6 is beyond the solver's max_iter 3 \(in solver\.prototxt\), and "
                   r'lr_policy "poly".*negative or NaN')),
]
if os.getuid() == 0:      # only root makes device nodes (in the case's own folder)
    CORPUS += [
        ("make-h-output-device-node", {"files": DEVICE, "cli": ["make-h", "--identity", "3", "-o", "null.dev"]},
         ("exit", r"-o/--output null\.dev is a character device, not a regular file")),
        ("surgery-output-device-node", {"files": {**NET_FILE, **DEVICE},
                                        "cli": SURGERY + ["--values", "0:3", "--output", "null.dev"]},
         ("exit", r"--output null\.dev is a character device")),
        ("migrate-force-output-device-node", {"files": {**NET_FILE, **DEVICE},
                                              "cli": ["migrate", "net.prototxt", "-o", "null.dev", "--force"]},
         ("exit", r"-o null\.dev is a character device")),
    ]


def node_kind(path):
    import stat
    mode = os.lstat(path).st_mode
    return "fifo" if stat.S_ISFIFO(mode) else "chr" if stat.S_ISCHR(mode) else "link" if stat.S_ISLNK(mode) \
        else "file" if stat.S_ISREG(mode) else "other"


@pytest.mark.parametrize("case, expected", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_i19(case, expected, tmp_path):
    import re
    result = run_case(case, tmp_path)
    kind, want = expected
    assert result["outcome"] == "exit", result
    assert "Traceback" not in result["stderr"], result["stderr"]
    assert re.search(want, result["stderr"] + result["stdout"], re.S | re.M), result
    if kind.startswith("exit0"):
        assert result["code"] == 0, result
    else:
        assert result["code"] > 0, result
        assert "wrote" not in result["stdout"], result
    if kind.endswith("-kept"):
        assert result["kept"], result
    # the special nodes are still what they were
    for name, want_kind in (("out.fifo", "fifo"), ("null.dev", "chr"), ("link.out", "link"),
                            ("out/data", "link")):
        if name in case.get("files", {}):
            assert node_kind(tmp_path / name) == want_kind, name
