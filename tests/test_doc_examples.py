"""Every shell and Python example in README.md and docs/*.md runs as printed.

How examples are found, prepared, run and compared: tests/doc_examples.py.
Each example is one test (its id: file, line, first command); the terminal
summary says how many ran and lists the ones the docs mark as not runnable
here (Docker, a GPU, `make test` itself), with their reasons.
"""

import os

import pytest

import doc_examples

BLOCKS = doc_examples.all_blocks()
# examples marked `skip` in the doc are not tests: the summary lists them with their reasons
EXAMPLES = [b for b in BLOCKS if b.kind != "text" and not b.skip]

SUMMARY = []   # printed by conftest.pytest_terminal_summary


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.id for b in EXAMPLES])
def test_example_runs_as_printed(block, tmp_path):
    problems = doc_examples.run_block(block, str(tmp_path))
    assert not problems, f"{block.path}:{block.line}: the example does not run as printed:\n" + \
        "\n".join(problems)


def test_inventory():
    counts, skipped = doc_examples.inventory(BLOCKS)
    assert counts["shell"] + counts["python"] > 10       # the mechanism found the examples
    assert len(EXAMPLES) == counts["shell"] + counts["python"]
    SUMMARY.append(f"doc examples: {counts['shell']} shell and {counts['python']} Python example(s) run, "
                   f"{counts['skipped']} marked not runnable here (not tests), "
                   f"{counts['text']} text block(s) not examples")
    SUMMARY.extend(f"  not runnable here: {s}" for s in skipped)
    SUMMARY.extend(f"  {page}: its examples are run by {test}" for page, test in doc_examples.OWN_TEST.items())


def test_parser_on_a_sample(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text("")
    (tmp_path / "README.md").write_text(
        "text\n\n```\nlayer { }\n```\n\n<!-- example: skip needs a GPU -->\n```sh\nrun --gpu 0\n```\n\n"
        "<!-- example: setup echo hi > f.txt -->\n```\n$ cat f.txt   # show it\nhi\n$ cat f.txt \\\n"
        "  f.txt\nhi\nhi\n```\n\n```python\nprint(1)\n```\n")
    blocks = doc_examples.all_blocks(str(tmp_path))
    assert [b.kind for b in blocks] == ["text", "shell", "shell", "python"]
    assert blocks[1].skip == "needs a GPU" and blocks[2].setup == ("echo hi > f.txt",)
    assert doc_examples.session(blocks[2].text) == [("cat f.txt   # show it", ["hi"]),
                                                    ("cat f.txt \\\n  f.txt", ["hi", "hi"])]
    assert doc_examples.run_block(blocks[2], str(tmp_path)) == []
    # a wrong output line is reported, with what was printed instead
    wrong = doc_examples.Block("README.md", 1, "", "$ echo one\ntwo", "shell")
    problems = doc_examples.run_block(wrong, str(tmp_path))
    assert len(problems) == 1 and "no line\n  two" in problems[0] and "one" in problems[0]
    # a failing command with no output shown is an error; an ellipsis matches any text
    assert doc_examples.run_block(doc_examples.Block("R", 1, "", "$ false", "shell"), str(tmp_path))
    assert doc_examples.run_block(doc_examples.Block("R", 1, "", "$ echo a b c\na ... c", "shell"),
                                  str(tmp_path)) == []
    # the folder prints as relative paths
    assert doc_examples.run_block(doc_examples.Block("R", 1, "", f"$ echo {tmp_path}/f.txt\nf.txt", "shell"),
                                  str(tmp_path)) == []
    # an example that would change the test environment is refused, not run
    pip = doc_examples.Block("R", 1, "sh", "pip install something", "shell")
    assert "mark it" in doc_examples.run_block(pip, str(tmp_path))[0]
    # Python examples must not write to stderr
    noisy = doc_examples.Block("R", 1, "python", "import sys; sys.stderr.write('log\\n')", "python")
    assert "stderr" in doc_examples.run_block(noisy, str(tmp_path))[0]
    with pytest.raises(ValueError, match="needs a reason"):
        (tmp_path / "README.md").write_text("<!-- example: skip -->\n```sh\nx\n```\n")
        doc_examples.all_blocks(str(tmp_path))
    assert os.path.isfile(tmp_path / "example.py")
