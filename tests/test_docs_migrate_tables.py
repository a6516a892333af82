"""docs/migrate.md's tables are generated from the loss families' declarations (issue 20).

`make docs-migrate` (tools/docs_migrate.py) writes the blocks between
`<!-- migrate-table: NAME -->` markers from each family's ForkLayer `doc`
and `movable` blocks; here: the committed docs hold exactly that text, and
a new family's fork appears there without editing the page by hand.
"""

import dataclasses
import os
import subprocess
import sys

from caffe_losses import losses
from caffe_losses.losses.family import ForkLayer
from caffe_losses.nets.migrate import update_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "migrate.md")


def _text():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def test_the_committed_tables_are_the_generated_ones():
    text = _text()
    new, names = update_docs(text)
    assert new == text, "docs/migrate.md does not agree with the families' declarations: run `make docs-migrate`"
    assert names == ["movable", "forks"]
    for family in losses.FAMILIES:
        for fl in family.migrate:
            assert f"| `{fl.type}`" in text and fl.doc in text
        for block in family.movable:
            assert f"| `{block} {{" in text


def test_a_new_family_s_fork_appears_in_the_tables():
    def convert(ctx, layer):
        return "SmoothL1Loss", {}
    new_family = dataclasses.replace(
        losses.FAMILIES[0], name="newloss",
        migrate=(ForkLayer("NewLoss", "somebody's NewLoss", convert, blocks=("new_loss_param",),
                           doc="`NewLoss` here, the same formula"),
                 ForkLayer("Python", "V-Net's Dice", convert, python=("pyLayer", "DiceLoss"),
                           doc="`DiceLoss` here")),
        movable={"new_loss_param": {"gamma": "gamma", "alpha": "alpha"}})
    new, _ = update_docs(_text(), losses.FAMILIES + (new_family,))
    assert "| `NewLoss`: somebody's NewLoss | `NewLoss` here, the same formula |" in new
    assert "| `Python` (`pyLayer.DiceLoss`): V-Net's Dice | `DiceLoss` here |" in new
    assert "| `new_loss_param { gamma alpha }` | `gamma`, `alpha` |" in new
    # the rest of the page is untouched, and the generated text is stable
    assert update_docs(new, losses.FAMILIES + (new_family,))[0] == new
    assert update_docs(new)[0] == _text()


def test_the_tool_checks_the_docs():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "docs_migrate.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
