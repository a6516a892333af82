"""Copy a prototxt template to a folder and write its data, ready to train.

Each template in prototxt_templates/ is a complete train/test net and solver
for one recipe. This copies it (with its solver and notes) and runs its
prepare step: the embedded data as HDF5 for Caffe's HDF5Data layer, plus any
H file or initial weights the recipe needs. Then train it either way:

  caffe-losses template --list
  caffe-losses template infogain_digits_source --out my_infogain
  cd my_infogain && caffe-losses train solver.prototxt
  cd my_infogain && caffe train -solver solver.prototxt      # Caffe's own tool
"""

import os
import shutil
import sys
import tempfile

from caffe_losses.templates import TEMPLATE_ROOT, list_templates, load_template, prepare_template


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="template name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the templates and exit")
    parser.add_argument("--out", help="folder to create (default: ./NAME)")
    parser.add_argument("--force", action="store_true",
                        help="write into an existing folder, replacing the template's own files "
                             "(its prototxts, template.yaml and what it prepares, e.g. data/); "
                             "nothing else in the folder is touched")


def check_out(out, source, force):
    """Why ``out`` cannot receive the template at ``source`` (a message), or None."""
    if os.path.islink(out) and not os.path.isdir(out):
        return f"{out} is a symbolic link to {os.path.realpath(out)}, which is not a folder"
    if os.path.exists(out) and not os.path.isdir(out):
        return f"{out} is a file, not a folder: choose another --out"
    real = os.path.realpath(out)
    root = os.path.realpath(TEMPLATE_ROOT)
    if real == root or real.startswith(root + os.sep):
        return f"{out} is inside the package's templates ({root}): choose a folder of your own"
    if not os.path.isdir(out):
        return None
    if not force:
        return (f"{out} exists; --force writes the template into it, replacing only the "
                f"template's own files")
    for folder, _, files in os.walk(source):
        for name in files:
            dest = os.path.join(out, os.path.relpath(os.path.join(folder, name), source))
            if os.path.islink(dest) or os.path.isdir(dest):
                kind = "a symbolic link" if os.path.islink(dest) else "a folder"
                return f"{dest} is {kind}; the template would write its file {name} there"
    return None


def _build_new(source, out):
    """Copies and prepares the template in a temporary folder beside ``out``, then renames it.

    A failure (pycaffe missing, a full disk, Ctrl-C) leaves nothing behind,
    not even the parent folders it created, so the same command can be run
    again.
    """
    parent = os.path.dirname(out)
    created = None                   # the first parent folder this call creates
    probe = parent
    while not os.path.isdir(probe):
        created, probe = probe, os.path.dirname(probe)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)          # mkdtemp makes it private
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        meta = prepare_template(tmp)
        os.rename(tmp, out)                    # fails if out appeared meanwhile: nothing replaced
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return meta


def run(args):
    try:
        names = list_templates()
    except FileNotFoundError as err:
        print(f"caffe-losses template: {err}", file=sys.stderr)
        return 2
    if args.list or not args.name:
        for name in names:
            print(f"{name:28} {load_template(os.path.join(TEMPLATE_ROOT, name))['description']}")
        return 0 if args.list else 2
    if args.name not in names:
        print(f"caffe-losses template: no template '{args.name}'. Templates: {', '.join(names)}", file=sys.stderr)
        return 2
    out = os.path.abspath(args.out or args.name)
    source = os.path.join(TEMPLATE_ROOT, args.name)
    problem = check_out(out, source, args.force)
    if problem:
        print(f"caffe-losses template: {problem}", file=sys.stderr)
        return 2
    try:
        if os.path.isdir(out):
            # --force: the template's files replace those of the same names; every
            # other file in the folder stays (nothing is deleted)
            shutil.copytree(source, out, dirs_exist_ok=True)
            meta = prepare_template(out)
        else:
            meta = _build_new(source, out)
    except (OSError, shutil.Error) as err:
        print(f"caffe-losses template: cannot write {out}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {meta['description']}")
    weights = f" --weights {meta['weights']}" if meta.get("weights") else ""
    caffe_weights = f" -weights {meta['weights']}" if meta.get("weights") else ""
    print(f"train:  cd {out} && caffe-losses train solver.prototxt{weights}")
    print(f"   or:  cd {out} && caffe train -solver solver.prototxt{caffe_weights}")
    return 0
