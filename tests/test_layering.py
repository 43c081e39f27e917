"""The import layering, checked by static analysis (ast) of every module of edgenet/ and
converters/ — imports inside functions included, since a lazy import is still a dependency:

- the runtime (edgenet/, the CLI aside) never imports onnx, torch, tensorflow or converters;
  the CLI imports the converter only inside the command that needs it;
- edgenet/format never imports the kernels (edgenet.cpu, edgenet.cuda);
- edgenet/cpu never imports edgenet/cuda;
- nothing outside edgenet/cli imports edgenet.cli (edgenet/__main__.py, the entry point,
  aside);
- no import cycles among the project's modules;
- no ``from x import _private`` (nor ``module._private``) across modules; a dependency's
  private name only where FOREIGN_PRIVATE lists it with the reason (no public API exists).

The checker itself is tested on a synthetic package that breaks every rule.
"""
from __future__ import annotations

import ast
import os
import textwrap
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("edgenet", "converters")
FRAMEWORKS = ("onnx", "torch", "tensorflow", "converters")
# A dependency's private names the project relies on, each with why; tests that exercise the
# code fail if a numba release removes one (numba is pinned >= 0.60 in pyproject.toml).
FOREIGN_PRIVATE = {
    ("numba.experimental.function_type", "_get_jit_address"):
        "the C address of a compiled tile function, called by its family's shared driver "
        "(edgenet/cpu/gen_simd_conv.py); numba has no public equivalent for a cached njit",
}


@dataclass(frozen=True)
class Imp:
    src: str          # importing module
    target: str       # imported module (resolved, absolute)
    name: str | None  # the name taken from it (from-imports), else None
    line: int
    toplevel: bool    # at module level (not inside a function)


def find_modules(root, packages=PACKAGES) -> dict:
    """{module name: (path, is_package)} for every .py file under ``root/<package>``."""
    mods = {}
    for pkg in packages:
        for d, dirs, files in os.walk(os.path.join(root, pkg)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(d, f), root)[:-3].split(os.sep)
                is_pkg = rel[-1] == "__init__"
                if is_pkg:
                    rel = rel[:-1]
                mods[".".join(rel)] = (os.path.join(d, f), is_pkg)
    return mods


def _function_lines(tree) -> set:
    """ids of the import nodes that sit inside a function body."""
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    inner.add(id(sub))
    return inner


def imports_of(mod, path, is_pkg, modules) -> tuple:
    """(imports, private attribute uses) of one module."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    inner = _function_lines(tree)
    out, aliases = [], {}
    pkg_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
    for node in ast.walk(tree):
        top = id(node) not in inner
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(Imp(mod, a.name, None, node.lineno, top))
                if a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[:len(pkg_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in modules:  # `from pkg import submodule`
                    out.append(Imp(mod, sub, None, node.lineno, top))
                    aliases[a.asname or a.name] = sub
                else:
                    out.append(Imp(mod, target, a.name, node.lineno, top))
    private_attrs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in aliases and _private(node.attr):
            private_attrs.append((aliases[node.value.id], node.attr, node.lineno))
    return out, private_attrs


def _private(name) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _under(mod, prefix) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def check(root, packages=PACKAGES, *, runtime="edgenet", cli="edgenet.cli",
          entry=("edgenet.__main__",)) -> list:
    """Every violation of the layering rules under ``root``, as readable strings."""
    modules = find_modules(root, packages)
    bad, graph = [], {m: set() for m in modules}
    for mod, (path, is_pkg) in sorted(modules.items()):
        imps, attrs = imports_of(mod, path, is_pkg, modules)
        where = f"{os.path.relpath(path, root)}"
        for i in imps:
            top = i.target.split(".")[0]
            loc = f"{where}:{i.line}"
            if _under(mod, runtime) and not _under(mod, cli) and top in FRAMEWORKS:
                bad.append(f"{loc}: the runtime imports {i.target}")
            if _under(mod, cli) and top in FRAMEWORKS and i.toplevel:
                bad.append(f"{loc}: the CLI imports {i.target} at module level")
            if _under(mod, f"{runtime}.format") and (_under(i.target, f"{runtime}.cpu") or
                                                     _under(i.target, f"{runtime}.cuda")):
                bad.append(f"{loc}: the file format imports the kernels ({i.target})")
            if _under(mod, f"{runtime}.cpu") and _under(i.target, f"{runtime}.cuda"):
                bad.append(f"{loc}: the CPU backend imports the CUDA one ({i.target})")
            if _under(i.target, cli) and not _under(mod, cli) and mod not in entry:
                bad.append(f"{loc}: {mod} imports the command line ({i.target})")
            if i.name and _private(i.name) and i.target != mod and \
                    (i.target, i.name) not in FOREIGN_PRIVATE:
                bad.append(f"{loc}: private name {i.name} imported from {i.target}")
            if i.target in modules and i.target != mod:
                graph[mod].add(i.target)
        for target, attr, line in attrs:
            if target != mod:
                bad.append(f"{where}:{line}: private name {attr} used from {target}")
    bad += [f"import cycle: {' -> '.join(c + [c[0]])}" for c in cycles(graph)]
    return bad


def cycles(graph) -> list:
    """The strongly connected components with more than one module (Tarjan), each as a
    sorted list."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# -- the project ---------------------------------------------------------------------------
def test_project_layering():
    bad = check(ROOT)
    assert not bad, "\n".join(bad)


def test_every_module_is_seen():
    mods = find_modules(ROOT)
    for m in ("edgenet.runtime", "edgenet.cli", "edgenet.cli.app", "edgenet.batch.journal",
              "edgenet.io", "edgenet.format.reader", "edgenet.cpu.conv", "converters.convert"):
        assert m in mods, m


# -- the checker catches what it should ------------------------------------------------------
def _write(root, files):
    for rel, src in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(src))


def test_checker_finds_every_kind_of_violation(tmp_path):
    _write(str(tmp_path), {
        "edgenet/__init__.py": "",
        "edgenet/__main__.py": "from edgenet.cli import main\n",
        "edgenet/errors.py": "_secret = 1\n",
        "edgenet/runtime.py": "import onnx\nfrom . import errors\nx = errors._secret\n",
        "edgenet/io.py": "def f():\n    from converters.convert import convert\n",
        "edgenet/format/__init__.py": "",
        "edgenet/format/reader.py": "from ..cpu import conv\n",
        "edgenet/cpu/__init__.py": "",
        "edgenet/cpu/conv.py": "from edgenet.cuda import kern\nfrom ..errors import _secret\n",
        "edgenet/cuda/__init__.py": "",
        "edgenet/cuda/kern.py": "",
        "edgenet/batch/__init__.py": "from .a import run\n",
        "edgenet/batch/a.py": "from ..cli import helper\ndef run():\n    from .b import g\n",
        "edgenet/batch/b.py": "from .a import run\ng = 1\n",
        "edgenet/cli/__init__.py": "import converters\nfrom .app import main\n",
        "edgenet/cli/app.py": "def main():\n    import converters.quantize\n",
        "converters/__init__.py": "",
        "converters/quantize.py": "",
        "converters/convert.py": "import edgenet.cli\n",
    })
    bad = "\n".join(check(str(tmp_path)))
    expected = [
        "edgenet/runtime.py:1: the runtime imports onnx",
        "edgenet/io.py:2: the runtime imports converters.convert",
        "edgenet/cli/__init__.py:1: the CLI imports converters at module level",
        "edgenet/format/reader.py:1: the file format imports the kernels (edgenet.cpu.conv)",
        "edgenet/cpu/conv.py:1: the CPU backend imports the CUDA one (edgenet.cuda.kern)",
        "edgenet/batch/a.py:1: edgenet.batch.a imports the command line (edgenet.cli)",
        "converters/convert.py:1: converters.convert imports the command line (edgenet.cli)",
        "edgenet/cpu/conv.py:2: private name _secret imported from edgenet.errors",
        "edgenet/runtime.py:3: private name _secret used from edgenet.errors",
        "import cycle: edgenet.batch.a -> edgenet.batch.b -> edgenet.batch.a",
    ]
    for e in expected:
        assert e in bad, f"missing: {e}\n--- found:\n{bad}"
    # allowed: the entry point, a lazy converter import in the CLI, an own private name
    assert "__main__" not in bad and "cli/app.py" not in bad
    assert len(bad.splitlines()) == len(expected), bad
