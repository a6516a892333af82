"""Draw a trained net's 2-D features coloured by class (the center-loss picture).

Runs each model (a prototxt and its .caffemodel) in the TEST phase over its
own test data, collects a 2-D feature blob and the labels, and draws one
scatter panel per model, side by side: give two models, trained with and
without center loss, for the figure of Wen et al. (ECCV 2016).  Each panel's
title carries the intra/inter ratio: the mean distance of a feature to its
class mean divided by the mean distance between class means (lower = more
compact classes; it does not depend on the scale of the features).

Example, from a template folder after training both nets:

  caffe-losses plot-features --model train_val.prototxt lenetpp_center_iter_2000.caffemodel \\
      --model softmax/train_val.prototxt softmax/lenetpp_iter_2000.caffemodel \\
      --title "softmax + center loss" --title "softmax only" --out features.png

Relative data paths inside a prototxt (``hdf5_data_param { source: ... }``)
are resolved as Caffe does, against the current folder; when they do not
exist there but do next to the prototxt, the prototxt's folder is used
(``--root`` sets it explicitly).
"""

import os
import sys

from caffe_losses.files.features import collect_features, default_samples, draw_features, intra_inter_ratio, load_net

from caffe_losses.files.safety import OutputError, figure_output, output_file

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--model", nargs=2, action="append", required=True,
                        metavar=("PROTOTXT", "CAFFEMODEL"),
                        help="a net and its trained weights; repeat for side-by-side panels (at most 4)")
    parser.add_argument("--title", action="append", default=None,
                        help="panel title, once per --model (default: the weights' file name)")
    parser.add_argument("--feature", default="feature",
                        help="blob holding the 2-D feature, N x 2 (default: %(default)s)")
    parser.add_argument("--label", default="label", help="blob holding the labels (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=None,
                        help="how many test samples to draw (default: all rows of the TEST-phase "
                             "HDF5Data source, else one batch)")
    parser.add_argument("--root", default=None,
                        help="folder that relative paths in the prototxts are resolved against "
                             "(default: the current folder, else the prototxt's folder)")
    parser.add_argument("--out", default="features.png",
                        help="picture to write (default: %(default)s; a name without an extension gets .png)")
    parser.add_argument("--suptitle", default="2-D features of the test set, coloured by class",
                        help="figure title (default: %(default)r)")


def run(args):
    models = args.model
    if len(models) > 4:
        raise SystemExit(f"plot-features: at most 4 --model pairs, got {len(models)}")
    titles = args.title or []
    if titles and len(titles) != len(models):
        raise SystemExit(f"plot-features: give one --title per --model ({len(models)}), got {len(titles)}")
    if args.samples is not None and args.samples < 1:
        raise SystemExit(f"plot-features: --samples must be >= 1, got {args.samples}")
    inputs = [path for pair in models for path in pair]
    try:
        out = figure_output(args.out, inputs, option="--out", tool="plot-features")
    except OutputError as err:
        print(err, file=sys.stderr)
        return 2
    panels = []
    for k, (prototxt, weights) in enumerate(models):
        try:
            net = load_net(prototxt, weights, root=args.root)
            samples = args.samples if args.samples is not None else default_samples(prototxt, args.root)
            feats, labels = collect_features(net, args.feature, args.label, samples)
        except (FileNotFoundError, ValueError) as err:
            print(err, file=sys.stderr)
            return 2
        title = titles[k] if titles else os.path.basename(weights)
        panels.append((feats, labels, title))
    try:
        with output_file(out, inputs, option="--out", tool="plot-features") as tmp:
            draw_features(panels, tmp, suptitle=args.suptitle)
    except (OSError, OutputError) as err:      # a disk that filled up, a path that changed meanwhile
        print(err, file=sys.stderr)
        return 2
    for feats, labels, title in panels:
        try:
            ratio = f"intra/inter ratio {intra_inter_ratio(feats, labels):.4f}"
        except ValueError:      # one class: no distance between classes
            ratio = "one class only: no intra/inter ratio"
        print(f"{title}: {len(labels)} samples, {ratio}")
    print(f"wrote {out}")
    return 0
