"""The shell and Python examples of README.md and docs/*.md: found, classified, run.

A fenced block is an **example** when its info string is ``sh``, ``bash``,
``shell``, ``console`` or ``python``, or when it has none and its first line
starts with ``$ ``.  Other blocks (prototxt, formulas, messages) are text.

Shell examples come in two forms:

* with ``$ `` prompts: each ``$ `` line is a command (a line ending in ``\\``
  continues on the next), the lines after it are its output as the reader
  sees it (stdout and stderr).  The shown lines must appear in the real
  output in the same order (lines the doc leaves out are allowed); ``...``
  inside a line matches any text, and a trailing comment after two or more
  spaces (``   # like this``) is the doc's, not the output's.  A command
  must exit 0 unless the doc shows its output (an error shown as printed);
* without prompts: the block is a bash script, run with ``set -e``.

Python examples run as a file with the venv's python; they must exit 0 and
write nothing to stderr (no Caffe log flooding the screen).

Every example runs in a new empty folder, with ``.venv/bin`` first on
``PATH`` (as after ``source .venv/bin/activate``) and no
``GLOG_minloglevel``, ``PYTHONPATH`` or other test settings: as a reader
runs it.  An HTML comment right before the block (invisible on GitHub)
steers it::

    <!-- example: setup caffe-losses template sigmoid_edges --out . -->
    <!-- example: skip needs Docker -->

``setup`` runs a shell command in the folder first (prepare it as the text
says; repeatable); ``skip`` marks a deliberately non-runnable example (a
reason is required), which is counted and reported, never silently dropped.
An unmarked example that would install packages or write into
site-packages is not run: it fails, asking for the mark.
"""

import dataclasses
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHELL_LANGS = {"sh", "bash", "shell", "console"}
PYTHON_LANGS = {"python", "py"}
DIRECTIVE = re.compile(r"^<!--\s*example:\s*(\w+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")


@dataclasses.dataclass
class Block:
    path: str          # relative to the repo root
    line: int          # of the opening fence, 1-based
    lang: str
    text: str
    kind: str          # "shell", "python" or "text"
    skip: str = None   # reason
    setup: tuple = ()

    @property
    def first_line(self):
        for line in self.text.splitlines():
            if line.strip():
                return line.strip()[2:].strip() if line.startswith("$ ") else line.strip()
        return ""

    @property
    def id(self):
        words = re.sub(r"[^\w.-]+", "-", self.first_line)[:40].strip("-")
        return f"{self.path}:{self.line}:{words}"


# pages whose examples another test runs, with its own conventions
OWN_TEST = {os.path.join("docs", "migrate.md"): "tests/test_docs_migrate.py"}


def doc_files(root=ROOT):
    """README.md and docs/*.md, less the pages in OWN_TEST."""
    docs = os.path.join(root, "docs")
    pages = sorted(os.path.join("docs", f) for f in os.listdir(docs) if f.endswith(".md"))
    return ["README.md"] + [p for p in pages if p not in OWN_TEST]


def parse(path, root=ROOT):
    """The fenced blocks of one Markdown file, with their directives."""
    with open(os.path.join(root, path)) as f:
        lines = f.read().splitlines()
    blocks, pending, i = [], [], 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i].strip())
        if m:
            pending.append((m.group(1), m.group(2), i + 1))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                if pending:
                    raise ValueError(f"{path}:{pending[0][2]}: an example directive must come right before "
                                     f"a fenced block")
            i += 1
            continue
        indent, marker, lang = fence.groups()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        text = "\n".join(body)
        first = next((b for b in body if b.strip()), "")
        if lang in SHELL_LANGS or (not lang and first.startswith("$ ")):
            kind = "shell"
        elif lang in PYTHON_LANGS:
            kind = "python"
        else:
            kind = "text"
        block = Block(path, start, lang, text, kind)
        for name, arg, where in pending:
            if name == "skip":
                if not arg:
                    raise ValueError(f"{path}:{where}: 'example: skip' needs a reason")
                block.skip = arg
            elif name == "setup":
                block.setup += (arg,)
            else:
                raise ValueError(f"{path}:{where}: unknown example directive {name!r} (skip, setup)")
        if pending and kind == "text":
            raise ValueError(f"{path}:{start}: example directive before a block that is not an example")
        pending = []
        blocks.append(block)
    return blocks


def all_blocks(root=ROOT):
    return [b for path in doc_files(root) for b in parse(path, root)]


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def reader_env():
    """The environment of a reader who activated the venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLOG_minloglevel", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV")
           and not k.startswith("PYTEST")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def session(text):
    """``$ `` commands and the output lines shown after each: [(command, [expected lines])]."""
    steps = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command + "\n" + lines[i]
            steps.append((command, []))
        elif line.strip():
            if not steps:
                raise ValueError(f"output before the first '$ ' command: {line!r}")
            steps[-1][1].append(re.sub(r"\s{2,}#\s.*$", "", line).rstrip())
        i += 1
    return steps


def _line_matches(expected, actual):
    if "..." not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def missing_lines(expected, actual):
    """The expected lines not found, in order, among the actual lines ([] if all were)."""
    k = 0
    for n, line in enumerate(expected):
        while k < len(actual) and not _line_matches(line, actual[k]):
            k += 1
        if k == len(actual):
            return expected[n:]
        k += 1
    return []


def _normalise(output, folder):
    folder = os.path.realpath(folder)
    text = output.replace(folder + os.sep, "").replace(folder, ".")
    return [line.rstrip() for line in text.splitlines() if line.strip()]


# an example that would change the Python environment the tests run in must be marked `skip`
CHANGES_ENVIRONMENT = re.compile(r"\bpip3?\s+(install|uninstall)\b|\bsysconfig\b.*\bpurelib\b|site-packages")


def run_block(block, folder, timeout=600):
    """Runs one example in ``folder``; returns a list of problems ([] when it ran as printed)."""
    if CHANGES_ENVIRONMENT.search(block.text) or any(CHANGES_ENVIRONMENT.search(c) for c in block.setup):
        return ["not run: it would change the Python environment the tests run in (pip install, "
                "site-packages); mark it <!-- example: skip REASON -->"]
    env = reader_env()
    for command in block.setup:
        proc = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode:
            return [f"setup {command!r} exited {proc.returncode}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}"]
    if block.kind == "python":
        script = os.path.join(folder, "example.py")
        with open(script, "w") as f:
            f.write(block.text + "\n")
        proc = subprocess.run([sys.executable, script], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=timeout)
        problems = []
        if proc.returncode:
            problems.append(f"exited {proc.returncode}: {proc.stderr[-3000:]}")
        elif proc.stderr.strip():
            problems.append(f"wrote to stderr ({len(proc.stderr.splitlines())} lines): {proc.stderr[:1500]}")
        return problems
    if not any(line.startswith("$ ") for line in block.text.splitlines()):
        proc = subprocess.run(["bash", "-e", "-c", block.text], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode:
            return [f"script exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"]
        return []
    steps = session(block.text)
    script = ["exec 2>&1"]
    for n, (command, _) in enumerate(steps):
        script += [command, f"printf '\\n@@example-step {n} %d@@\\n' $?"]
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=timeout)
    parts = re.split(r"\n@@example-step (\d+) (\d+)@@\n", "\n" + proc.stdout)
    problems = []
    outputs = {int(parts[k]): (int(parts[k + 1]), parts[k - 1]) for k in range(1, len(parts) - 1, 3)}
    for n, (command, expected) in enumerate(steps):
        if n not in outputs:
            problems.append(f"$ {command}: did not run (the shell stopped): {proc.stdout[-2000:]}")
            break
        status, output = outputs[n]
        actual = _normalise(output, folder)
        if status and not expected:
            problems.append(f"$ {command}: exited {status} (the doc shows no output, so it must succeed):\n"
                            + "\n".join(actual[-30:]))
            continue
        missing = missing_lines(expected, actual)
        if missing:
            problems.append(f"$ {command}: the doc shows\n  " + "\n  ".join(expected) +
                            f"\nbut the output has no line\n  {missing[0]}\n(in order); the output was:\n  "
                            + "\n  ".join(actual[-40:]))
    return problems


def inventory(blocks):
    """Counts by kind, and the skipped examples with their reasons."""
    counts = {"shell": 0, "python": 0, "text": 0, "skipped": 0}
    skipped = []
    for b in blocks:
        if b.kind == "text":
            counts["text"] += 1
        elif b.skip:
            counts["skipped"] += 1
            skipped.append(f"{b.path}:{b.line} ({b.first_line[:50]}): {b.skip}")
        else:
            counts[b.kind] += 1
    return counts, skipped


if __name__ == "__main__":   # python tests/doc_examples.py: list what the test runs
    blocks = all_blocks()
    counts, skipped = inventory(blocks)
    for b in blocks:
        state = "text" if b.kind == "text" else (f"skip: {b.skip}" if b.skip else f"run ({b.kind})")
        print(f"{b.path}:{b.line}: {state}: {b.first_line[:70]}")
    print(counts)
