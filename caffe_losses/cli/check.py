"""Lint a net (or a solver's nets) for the mistakes that make losses silently wrong.

Checks, per phase: Python loss layers without loss_weight (unless a later
layer fed by the loss carries it); caffe_losses param_str that does not parse
or validate; loss_param and other blocks Caffe never passes to Python layers;
missing data sources (or ones that are not a text list of files); a solver's
settings Caffe would abort on (type, lr_policy and the fields its policy
needs) and every other check `caffe-losses train` makes before training
(snapshot_prefix's folder, weights files, layer types and bottoms); softmax
applied twice (a layer that applies softmax itself fed by a Softmax); and
each loss family's own rules (its lint module): e.g. H files that are
missing, malformed or of the wrong size for the classifier before them, a
loss that expects probabilities fed raw scores, a fixed expectation kernel
without lr_mult: 0, centers moved by both the layer and the solver.
Relative paths are resolved against the current folder, as Caffe does: run
it where you run `caffe train`. A net Caffe cannot parse because of
a fork's field is reported with the field and the `caffe-losses migrate`
command to run.

  caffe-losses check train_val.prototxt
  caffe-losses check solver.prototxt          # checks the solver's net(s)

Exit status: 0 clean (warnings and notes allowed), 1 errors found (or warnings with
--strict), 2 the file could not be read.
"""

import sys

from caffe_losses.nets.lint import lint_file


def add_arguments(parser):
    parser.add_argument("prototxt", nargs="+", help="net or solver prototxt(s)")
    parser.add_argument("--strict", action="store_true", help="warnings fail too")


def run(args):
    status = 0
    for path in args.prototxt:
        try:
            findings = lint_file(path)
        except (FileNotFoundError, ValueError) as err:
            print(f"caffe-losses check: {err}", file=sys.stderr)
            status = max(status, 2)
            continue
        errors = sum(f.severity == "error" for _, f in findings)
        notes = sum(f.severity == "note" for _, f in findings)   # valid settings worth knowing
        warnings = len(findings) - errors - notes
        for net_path, f in findings:
            print(f"{net_path}: {f}")
        print(f"{path}: {errors} error(s), {warnings} warning(s)" + (f", {notes} note(s)" if notes else ""))
        if errors or (args.strict and warnings):
            status = max(status, 1)
    return status
