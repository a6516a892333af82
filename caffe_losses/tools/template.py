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

from caffe_losses.templates import TEMPLATE_ROOT, list_templates, load_template, prepare_template


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="template name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the templates and exit")
    parser.add_argument("--out", help="folder to create (default: ./NAME)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing folder")


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
    if os.path.exists(out):
        if not args.force:
            print(f"caffe-losses template: {out} exists (use --force to overwrite)", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    shutil.copytree(os.path.join(TEMPLATE_ROOT, args.name), out)
    meta = prepare_template(out)
    print(f"wrote {out}: {meta['description']}")
    weights = f" --weights {meta['weights']}" if meta.get("weights") else ""
    caffe_weights = f" -weights {meta['weights']}" if meta.get("weights") else ""
    print(f"train:  cd {out} && caffe-losses train solver.prototxt{weights}")
    print(f"   or:  cd {out} && caffe train -solver solver.prototxt{caffe_weights}")
    return 0
