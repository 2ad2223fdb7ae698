"""Write the API reference ``docs/api.md`` from the docstrings of mlmi.

    python tools/make_api_docs.py           # (re)write docs/api.md
    python tools/make_api_docs.py --check   # exit 1 if docs/api.md is out of date

Standard library only (``inspect``, ``ast``). For every documented module the public
names are its ``__all__`` (or, without one, the functions, classes and upper-case
constants defined in it); each gets its signature and docstring, classes also their
public methods and properties, constants their value and the ``#:`` comment or the
string after the assignment that documents them. The registry of imputation methods
(``mlmi.methods``) is listed with the types each method imputes. The output is a pure
function of the source code, so ``tests/test_docs.py`` can check that the committed
file is up to date.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import sys
import textwrap
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "api.md"

#: (module, one-line summary) in the order they appear
MODULES = (
    ("mlmi", "imputation, analysis and pooling, the GLMM engine (top-level names)"),
    ("mlmi.analysis", "analysing completed data sets (mice's with() and mira)"),
    ("mlmi.pool", "Rubin's rules with Barnard–Rubin degrees of freedom"),
    ("mlmi.glmm", "two-level generalized linear mixed models"),
    ("mlmi.posterior", "draws of a study's random effects from their posterior"),
    ("mlmi.methods", "the registry of univariate imputation methods"),
    ("mlmi.vartypes", "variable types: inference rule, coding, default methods, plots"),
    ("mlmi.simulation", "the paper's simulation study"),
    ("mlmi.datasets", "the synthetic CKD-like data set of the applied demonstration"),
    ("mlmi.plots", "figures for checking and reporting an imputation"),
    ("mlmi.exceptions", "errors and warnings"),
)
#: names of ``mlmi.__all__`` that are documented in their own section
SKIP = {("mlmi", "datasets"), ("mlmi", "plots"), ("mlmi", "simulation")}
MAX_VALUE = 160  # longest value written out for a constant


class _Raw:
    """An annotation string shown without quotes (the package uses postponed
    evaluation of annotations, so ``inspect`` sees strings)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = []
    for p in sig.parameters.values():
        if isinstance(p.annotation, str):
            p = p.replace(annotation=_Raw(p.annotation))
        params.append(p)
    ret = sig.return_annotation
    if isinstance(ret, str):
        ret = _Raw(ret)
    text = str(sig.replace(parameters=params, return_annotation=ret))
    if " at 0x" in text:
        raise ValueError(f"signature of {obj!r} shows a memory address: {text}")
    return text


def _wrap_signature(name: str, sig: str, width: int = 88) -> str:
    """``name(sig)`` on one line, or one parameter per line when long."""
    one = f"{name}{sig}"
    if len(one) <= width:
        return one
    inner, _, tail = sig.rpartition(")")
    parts, depth, cur = [], 0, ""
    for ch in inner[1:]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    body = "".join(f"    {p},\n" for p in parts)
    return f"{name}(\n{body}){tail}"


def _doc(obj) -> str:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else ""


def _text_block(text: str) -> list[str]:
    if "```" in text:
        raise ValueError("a docstring contains a code fence: " + text[:80])
    return ["```text", text, "```", ""]


def _constant_docs(module) -> dict[str, str]:
    """Documentation of module-level constants: ``#:`` comment lines right above the
    assignment, or a string literal right after it."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    tree = ast.parse(source)
    out: dict[str, str] = {}
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[target.id] = inspect.cleandoc(nxt.value.value)
            continue
        comment = []
        j = node.lineno - 2
        while j >= 0 and lines[j].lstrip().startswith("#:"):
            comment.insert(0, lines[j].lstrip()[2:].strip())
            j -= 1
        if comment:
            out[target.id] = " ".join(comment)
    return out


def _plain(value):
    """``value`` with numpy arrays as lists (a representation that does not depend on
    numpy's print options), or None if it is not a plain value."""
    if hasattr(value, "tolist") and hasattr(value, "shape") and not hasattr(value, "columns"):
        return value.tolist()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value,
                                                                        strict=True)) \
            else type(value)(items)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            pv = _plain(v)
            if pv is None and v is not None:
                return None
            out[k] = pv
        return out
    return None


def _value(value) -> str:
    plain = _plain(value)
    if plain is not None or value is None:
        text = repr(plain)
        if len(text) <= MAX_VALUE:
            return text
    if hasattr(value, "shape") and hasattr(value, "columns"):
        return f"pandas DataFrame, {value.shape[0]} rows × {value.shape[1]} columns"
    return f"{type(value).__name__}"


def _public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if not n.startswith("__")]
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            if obj.__module__ == module.__name__:
                names.append(name)
        elif name.isupper() and not isinstance(obj, types.ModuleType):
            names.append(name)
    return names


def _owner(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _render_class(qualname: str, cls) -> list[str]:
    out = []
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    head = f"class {qualname.rsplit('.', 1)[-1]}"
    if issubclass(cls, BaseException):
        out += _text_block(f"{head}({', '.join(bases)})" if bases else head)
    else:
        out += _text_block(_wrap_signature(head, _signature(cls)))
    doc = _doc(cls)
    if doc:
        out += _text_block(doc)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    props, methods = [], []
    for name, attr in vars(cls).items():
        if name.startswith("_") or name in fields:
            continue
        if isinstance(attr, property):
            props.append((name, attr))
        elif isinstance(attr, (staticmethod, classmethod)):
            methods.append((name, attr.__func__))
        elif inspect.isfunction(attr):
            methods.append((name, attr))
    for name, prop in props:
        out.append(f"#### `{qualname}.{name}` (property)")
        out.append("")
        doc = _doc(prop.fget)
        if doc:
            out += _text_block(doc)
    for name, func in methods:
        out.append(f"#### `{qualname}.{name}()`")
        out.append("")
        sig = _signature(func)
        sig = sig.replace("(self, ", "(", 1).replace("(self)", "()", 1)
        out += _text_block(_wrap_signature(name, sig))
        doc = _doc(func)
        if doc:
            out += _text_block(doc)
    return out


def _render_module(modname: str, summary: str, seen: dict[int, str]) -> list[str]:
    module = importlib.import_module(modname)
    out = [f"## `{modname}`", "", f"*{summary}*", ""]
    doc = _doc(module)
    if doc:
        out += _text_block(doc)
    constants = _constant_docs(module)
    # a package documents constants where its submodules define them
    if hasattr(module, "__path__") and modname != "mlmi":
        import pkgutil

        for sub in sorted(m.name for m in pkgutil.iter_modules(module.__path__)
                          if not m.name.startswith("_")):
            submodule = importlib.import_module(f"{modname}.{sub}")
            for key, text in _constant_docs(submodule).items():
                constants.setdefault(key, text)
    for name in _public_names(module):
        if (modname, name) in SKIP:
            continue
        obj = getattr(module, name)
        qual = f"{modname}.{name}"
        if isinstance(obj, types.ModuleType):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) in seen:
            out += [f"### `{qual}`", "", f"The same object as `{seen[id(obj)]}` (above).", ""]
            continue
        if inspect.isclass(obj):
            seen[id(obj)] = qual
            out += [f"### `{qual}`", ""]
            out += _render_class(qual, obj)
        elif inspect.isfunction(obj):
            seen[id(obj)] = qual
            out += [f"### `{qual}()`", ""]
            out += _text_block(_wrap_signature(name, _signature(obj)))
            doc = _doc(obj)
            if doc:
                out += _text_block(doc)
        else:
            out += [f"### `{qual}` (constant)", ""]
            text = f"{name} = {_value(obj)}"
            if name in constants:
                text += "\n\n" + constants[name]
            out += _text_block(text)
    if modname == "mlmi.methods":
        out += _registry()
    return out


def _fill(text: str) -> str:
    return textwrap.fill(text, 90, break_on_hyphens=False, break_long_words=False)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _registry() -> list[str]:
    from mlmi.methods import STRATEGIES, available_methods

    out = ["### Registered imputation methods", "",
           _fill("Every method that `mlmi.impute(..., method=...)` accepts, with the "
                 "variable types it imputes. *Multilevel* methods need the study column as "
                 "the cluster (predictor-matrix code -2); single-level ones take it as fixed "
                 "study dummies (code 1) or ignore it (code 0)."), "",
           "| method | imputes | multilevel | description |",
           "|---|---|---|---|"]
    for name, info in sorted(available_methods().items()):
        out.append(f"| `{name}` | {', '.join(info.types)} | "
                   f"{'yes' if info.multilevel else 'no'} | {_cell(info.description)} |")
    out += ["", "### Strategies", "",
            _fill("A strategy (`method=\"mlmi\"`, `\"stratified\"`, `\"2stage\"`) picks "
                  "the method of every incomplete variable by its type; `None` is "
                  "`\"mlmi\"`."), "",
            "| strategy | " + " | ".join(sorted({t for s in STRATEGIES.values() for t in s}))
            + " |"]
    kinds = sorted({t for s in STRATEGIES.values() for t in s})
    out.append("|---|" + "---|" * len(kinds))
    for strategy, table in STRATEGIES.items():
        out.append(f"| `{strategy}` | "
                   + " | ".join(f"`{table[k]}`" if k in table else "" for k in kinds) + " |")
    out.append("")
    return out


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation removed, spaces to dashes."""
    text = heading.lower()
    keep = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return keep.replace(" ", "-")


def render() -> str:
    """The text of docs/api.md."""
    import mlmi

    lines = ["# API reference", "",
             _fill(f"Generated from the docstrings of mlmi {mlmi.__version__} by "
                   "`tools/make_api_docs.py` — do not edit by hand; after changing a "
                   "docstring run `python tools/make_api_docs.py` (`tests/test_docs.py` "
                   "fails while this file is out of date). The user guide is in "
                   "[index.md](index.md)."), "",
             "## Contents", ""]
    for modname, summary in MODULES:
        lines.append(f"- [`{modname}`](#{_anchor(modname)}) — {summary}")
    lines.append("")
    seen: dict[int, str] = {}
    for modname, summary in MODULES:
        lines += _render_module(modname, summary, seen)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if docs/api.md differs")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python tools/make_api_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
