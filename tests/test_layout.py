"""The package's shape: no import circle, imports at the top unless there is a reason.

The import graph is read from the source with ``ast`` (every import
statement, at module level or inside a function, since a circle hidden by
function-level imports is still a circle), and must be acyclic.  A
function-level import is allowed only for a module listed below with its
reason: a new one needs a reason here, or goes to the top of its module.
"""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "caffe_losses")

# imported modules (and their submodules) that may be imported inside a function anywhere
ALLOWED_ANYWHERE = {
    "caffe": "pycaffe: the CLI imports every tool module, and must run without pycaffe to say in one "
             "line that it is missing (tests/test_i19_first_minute.py); the cores and glue.params "
             "work without it",
    "caffe_losses.losses": "a family's layer module imports caffe (as above)",
    "matplotlib": "optional: the 'demo' extra (training curves, the demo's figures, plot-features)",
}

# (file under caffe_losses/, imported module) -> reason
ALLOWED = {
    ("files/hmatrix.py", "h5py"): "hmatrix.read_labels: issue 20 part P reworks the label readers; kept as it was",
    ("cli/make_pos_weight.py", "h5py"): "issue 20 part P reworks this tool's label reader; kept as it was",
    ("cli/make_pos_weight.py", "caffe_losses.glue.params"): "issue 20 part P's file; kept as it was",
    ("cli/make_pos_weight.py", "google.protobuf.text_encoding"): "issue 20 part P's file; kept as it was",
}


def _modules():
    """{dotted module name: (path, is a package __init__)} of every module of the package."""
    out = {}
    root = os.path.dirname(PACKAGE)
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _imports(tree, name, package):
    """Each import statement as (node, the imported module names, inside a function)."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.append((child, [a.name for a in child.names], inner))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module
                found.append((child, [module] + [f"{module}.{a.name}" for a in child.names], inner))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph():
    modules = _modules()
    graph = {}
    for name, (path, package) in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node, names, _ in _imports(tree, name, package):
            if isinstance(node, ast.ImportFrom) and len(names) > 1 and all(n in modules for n in names[1:]):
                # `from a.b import c` of submodules imports a.b.c, as `import a.b.c` does: its edge
                # is to the submodule (a package's __init__ is not counted for either form)
                names = names[1:]
            edges.update(n for n in names if n in modules and n != name)
        graph[name] = edges
    return graph


def _cycle(graph):
    """One import circle as a list of modules, or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = "done"
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_no_import_circle_among_the_packages_modules():
    graph = _graph()
    assert len(graph) > 30 and "caffe_losses.nets.lint" in graph       # the walk found the package
    assert "caffe_losses.nets.prototxt" in graph["caffe_losses.nets.lint"]  # and its edges
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def _allowed(relpath, module):
    if any(module == m or module.startswith(m + ".") for m in ALLOWED_ANYWHERE):
        return True
    return (relpath, module) in ALLOWED


def test_function_level_imports_have_a_reason():
    modules = _modules()
    unexplained = []
    for name, (path, package) in sorted(modules.items()):
        relpath = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node, names, in_function in _imports(tree, name, package):
            if in_function and not any(_allowed(relpath, n) for n in names):
                unexplained.append(f"caffe_losses/{relpath}:{node.lineno}: {names[-1]}")
    assert not unexplained, ("imports inside functions without a reason in tests/test_layout.py "
                             "(move them to the top of the module):\n" + "\n".join(unexplained))


def test_the_allowed_list_is_checked():
    assert _allowed("lint.py", "caffe.proto.caffe_pb2") and _allowed("x.py", "matplotlib.pyplot")
    assert not _allowed("lint.py", "os") and not _allowed("lint.py", "caffe_losses.nets.prototxt")
    assert not _allowed("lint.py", "caffeine")


@pytest.mark.parametrize("blocked", [("caffe",), ("matplotlib",), ("caffe", "matplotlib")])
def test_the_cli_and_its_tools_import_without_the_optional_modules(blocked):
    """Why caffe and matplotlib stay inside functions: the parser (every tool module) builds without them."""
    code = textwrap.dedent(f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None
        from caffe_losses import cli
        import caffe_losses.nets.prototxt, caffe_losses.nets.lint, caffe_losses.nets.migrate, caffe_losses.training
        import caffe_losses.files.figures, caffe_losses.files.features, caffe_losses.nets.preflight
        cli.build_parser()
        assert not any(sys.modules.get(n) for n in {blocked!r})
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_layers_of_the_package_as_docs_developing_describes_them():
    """cores <- layers and the Caffe glue <- nets, training, files <- commands (caffe_losses/cli);
    the demo's engine (experiments) is read only by the families' recipes and the demo command."""
    graph = _graph()
    cores = {n for n in graph if n.endswith(".core") and n.startswith("caffe_losses.losses.")}
    assert len(cores) >= 4 and "caffe_losses.losses.common" in graph
    for name, edges in graph.items():
        if name in cores or name == "caffe_losses.losses.common":
            # NumPy only: the cores, and the float32 guards of safety (no caffe import there);
            # "caffe_losses.losses" is the package named in `from caffe_losses.losses import common`
            assert edges <= cores | {"caffe_losses.losses", "caffe_losses.losses.common",
                                     "caffe_losses.files.safety"}, name
        if not name.startswith("caffe_losses.cli"):
            assert not {n for n in edges if n.startswith("caffe_losses.cli")}, name
        if not (name.startswith("caffe_losses.experiments") or name == "caffe_losses.cli.demo"
                or name.endswith(".experiment")):
            assert not {n for n in edges if n.startswith("caffe_losses.experiments")}, name
        if name.startswith("caffe_losses.experiments") or name.endswith(".experiment"):
            assert not {n for n in edges if n.startswith("caffe_losses.cli")}, name
