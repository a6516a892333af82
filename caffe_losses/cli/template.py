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

from caffe_losses.nets.templates import TEMPLATE_ROOT, list_templates, load_template, prepare_template


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="template name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the templates and exit")
    parser.add_argument("--out", help="folder to create (default: ./NAME)")
    parser.add_argument("--force", action="store_true",
                        help="write into an existing folder, replacing the template's own files "
                             "(its prototxts, template.yaml and what it prepares, e.g. data/); "
                             "nothing else in the folder is touched, and nothing at all when one of "
                             "those would go through a symbolic link")


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
    return _blocked(out, _files_under(source))


def _files_under(folder):
    """The files under ``folder``, as paths relative to it."""
    return [os.path.relpath(os.path.join(top, name), folder)
            for top, _, files in os.walk(folder) for name in files]


def _blocked(out, names):
    """Why a file of ``names`` (relative paths) cannot be written under ``out`` (a message), or None.

    Each must land on a regular file or a new path, through real folders: a
    symbolic link on the way (``out/data`` linking to the user's data folder,
    ``out/data/train.h5`` linking to the user's file) is never written
    through, and a folder, FIFO or device node is never replaced.
    """
    for rel in sorted(names):
        parts = rel.split(os.sep)
        for depth in range(1, len(parts) + 1):
            dest = os.path.join(out, *parts[:depth])
            last = depth == len(parts)
            if os.path.islink(dest):
                return (f"{dest} is a symbolic link (to {os.readlink(dest)}); the template would write "
                        f"its file {rel} {'there' if last else 'through it'}: nothing was written")
            if not os.path.lexists(dest):
                break
            if not last and not os.path.isdir(dest):
                return f"{dest} is a file; the template would write its file {rel} inside it as a folder"
            if last and not os.path.isfile(dest):
                kind = "a folder" if os.path.isdir(dest) else "not a regular file"
                return f"{dest} is {kind}; the template would write its file {rel} there"
    return None


def _force_into(source, out):
    """--force: builds the template in a temporary folder beside ``out``, checks where each of its
    files would land, then moves them in.

    The template's files replace regular files of the same names; every
    other file in the folder stays (nothing is deleted); a symbolic link on
    the way refuses the whole copy before anything in ``out`` changes (the
    data that ``prepare`` writes is checked as well as the template's own
    files).
    """
    real = os.path.realpath(out)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(real)}.", suffix=".tmp",
                           dir=os.path.dirname(real))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        meta = prepare_template(tmp)
        names = _files_under(tmp)
        problem = _blocked(out, names)
        if problem:
            raise _Refused(problem)
        for rel in names:
            dest = os.path.join(out, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.isfile(dest):   # keep the permissions of the file replaced
                shutil.copymode(dest, os.path.join(tmp, rel))
            os.replace(os.path.join(tmp, rel), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


class _Refused(Exception):
    """A file the template would write is in the way (the message says which)."""


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
            meta = _force_into(source, out)
        else:
            meta = _build_new(source, out)
    except _Refused as err:
        print(f"caffe-losses template: {err}", file=sys.stderr)
        return 2
    except (OSError, shutil.Error) as err:
        print(f"caffe-losses template: cannot write {out}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {meta['description']}")
    weights = f" --weights {meta['weights']}" if meta.get("weights") else ""
    caffe_weights = f" -weights {meta['weights']}" if meta.get("weights") else ""
    print(f"train:  cd {out} && caffe-losses train solver.prototxt{weights}")
    print(f"   or:  cd {out} && caffe train -solver solver.prototxt{caffe_weights}")
    return 0
