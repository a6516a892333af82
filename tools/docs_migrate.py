#!/usr/bin/env python3
"""Write docs/migrate.md's tables from the loss families' declarations (`make docs-migrate`).

  python tools/docs_migrate.py            # regenerate the tables
  python tools/docs_migrate.py --check    # only compare; exit 1 if the docs differ

The blocks between `<!-- migrate-table: NAME -->` and `<!-- /migrate-table -->`
are generated (caffe_losses.nets.migrate.update_docs): the layer types
`migrate` translates, from each family's `ForkLayer` declarations (their
`doc`), and the blocks it moves into `param_str` (their `movable`). A new
family's forks appear there without editing docs/migrate.md by hand.
tests/test_docs_migrate_tables.py checks that the committed docs agree.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from caffe_losses.nets.migrate import update_docs  # noqa: E402

DOC = os.path.join("docs", "migrate.md")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"compare {DOC} and change nothing")
    args = parser.parse_args(argv)
    path = os.path.join(ROOT, DOC)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new, _ = update_docs(text)
    if new == text:
        print(f"docs-migrate: {DOC} is up to date")
        return 0
    if args.check:
        print(f"docs-migrate: {DOC} differs from the families' declarations: run `make docs-migrate`",
              file=sys.stderr)
        return 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"docs-migrate: wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
