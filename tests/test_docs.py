"""The documentation cannot go stale.

* Every ```python block of README.md and docs/*.md runs (one whose first line is
  ``# requires: statsmodels`` only where that optional test dependency is installed),
  file by file: the blocks of one file in order in one namespace, in a fresh temporary
  working directory. They run in one child process with one BLAS thread (as
  BENCHMARKS.md measures), so they neither leak state into the other tests nor depend
  on it. Illustrative code uses another fence
  (```text, ```bash) and is not executed.
* Every ``mlmi ...`` command line in a ```bash block parses with the real command-line
  parser (options and sub-commands exist), without running it.
* docs/api.md is exactly what tools/make_api_docs.py generates from the docstrings.
* README.md's first code block is the two set-up commands that CI runs.
* Links between the documentation files point to files that exist.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "docs" / "results").glob("*.md"))]
FIRST_BLOCK = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/mlmi demo "
    "--out demo-out\n"
    "python3 -m venv .venv && .venv/bin/pip install -q -e \".[test]\" && "
    ".venv/bin/python -m pytest\n"
)
_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(info string, first line number of the code, code) of every fenced block."""
    blocks = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].rstrip("\n"))
        if not match:
            i += 1
            continue
        fence, info = match.groups()
        start = i + 1
        j = start
        while j < len(lines) and lines[j].rstrip("\n").strip() != fence:
            j += 1
        if j == len(lines):
            raise AssertionError(f"unclosed code fence opened on line {i + 1}")
        blocks.append((info.lower(), start + 1, "".join(lines[start:j])))
        i = j + 1
    return blocks


_REQUIRES = re.compile(r"^# requires: ([\w., ]+)$")


def _available(code: str) -> bool:
    """A block whose first line is ``# requires: mod1, mod2`` (an optional test
    dependency, e.g. statsmodels) runs only where those modules are installed."""
    match = _REQUIRES.match(code.split("\n", 1)[0].strip())
    if not match:
        return True
    return all(importlib.util.find_spec(m.strip()) is not None
               for m in match.group(1).split(","))


def python_blocks(path: Path) -> list[tuple[int, str]]:
    return [(line, code) for info, line, code in fenced_blocks(path.read_text("utf-8"))
            if info in ("python", "py") and _available(code)]


# ---------------------------------------------------------------------------- examples
_RUNNER = textwrap.dedent('''
    import json, os, sys, tempfile, time, traceback, warnings

    jobs = json.load(open(sys.argv[1], encoding="utf-8"))
    results = {}
    home = os.getcwd()
    for job in jobs:
        t0 = time.perf_counter()
        namespace = {"__name__": "__main__"}
        error = None
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                with warnings.catch_warnings():
                    for line, code in job["blocks"]:
                        # pad so that tracebacks give the line number in the markdown file
                        exec(compile("\\n" * (line - 1) + code, job["path"], "exec"),
                             namespace)
            except BaseException:
                error = traceback.format_exc()
            finally:
                os.chdir(home)
        results[job["path"]] = {"error": error, "seconds": time.perf_counter() - t0}
    json.dump(results, open(sys.argv[2], "w", encoding="utf-8"))
''')


@pytest.fixture(scope="module")
def example_results(tmp_path_factory) -> dict:
    """Run the python blocks of every documentation file in one child process."""
    tmp = tmp_path_factory.mktemp("doc-examples")
    jobs = [{"path": str(p), "blocks": python_blocks(p)} for p in DOC_FILES]
    jobs_file, results_file = tmp / "jobs.json", tmp / "results.json"
    jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(jobs_file), str(results_file)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not results_file.exists():
        raise AssertionError(f"the example runner failed:\n{proc.stderr[-5000:]}")
    return json.loads(results_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_python_examples_run(path: Path, example_results: dict) -> None:
    result = example_results[str(path)]
    assert result["error"] is None, (
        f"a python example in {path.relative_to(REPO)} failed (line numbers are those of "
        f"the markdown file):\n{result['error']}")


def test_examples_are_found() -> None:
    """Guards the block parser: the README and the guide do have python examples."""
    names = {p.name for p in DOC_FILES}
    assert {"README.md", "index.md", "api.md"} <= names
    assert python_blocks(REPO / "README.md")
    assert sum(len(python_blocks(p)) for p in DOC_FILES) >= 20


# ---------------------------------------------------------------------------- command lines
def _command_lines(path: Path) -> list[tuple[int, str]]:
    """``mlmi ...`` commands in the bash blocks, with their line numbers (backslash
    continuations joined, comments dropped)."""
    out = []
    for info, first, code in fenced_blocks(path.read_text("utf-8")):
        if info not in ("bash", "sh", "shell", "console"):
            continue
        pending, start = "", first
        for k, raw in enumerate(code.splitlines()):
            if not pending:
                start = first + k
            pending += raw.removeprefix("$ ")
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            for part in pending.split("&&"):
                words = shlex.split(part, comments=True)
                if words and Path(words[0]).name == "mlmi":
                    out.append((start, shlex.join(words)))
            pending = ""
    return out


COMMANDS = [(p, line, cmd) for p in DOC_FILES for line, cmd in _command_lines(p)]


@pytest.mark.parametrize("path,line,command", COMMANDS,
                         ids=[f"{p.name}:{line}" for p, line, _ in COMMANDS])
def test_command_lines_parse(path: Path, line: int, command: str) -> None:
    from mlmi.cli import build_parser

    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown option or sub-command
        raise AssertionError(f"{path.name}:{line}: `{command}` does not parse") from exc


def test_docs_show_command_lines() -> None:
    assert len(COMMANDS) >= 10


# ---------------------------------------------------------------------------- API reference
def test_api_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("make_api_docs",
                                                  REPO / "tools" / "make_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    current = (REPO / "docs" / "api.md").read_text("utf-8")
    assert current == expected, (
        "docs/api.md is out of date: run `python tools/make_api_docs.py` and commit it")


def test_api_reference_lists_every_method() -> None:
    from mlmi.methods import available_methods

    text = (REPO / "docs" / "api.md").read_text("utf-8")
    for name, info in available_methods().items():
        assert f"| `{name}` | {', '.join(info.types)} |" in text


# ---------------------------------------------------------------------------- README, links
def test_readme_first_code_block_is_the_setup() -> None:
    info, _, code = fenced_blocks((REPO / "README.md").read_text("utf-8"))[0]
    assert info == ""
    assert code == FIRST_BLOCK


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_local_links_exist(path: Path) -> None:
    text = path.read_text("utf-8")
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file, _, anchor = target.partition("#")
        dest = path.parent / file if file else path
        assert dest.exists(), f"{path.name}: broken link {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{path.name}: no heading for link {target}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of the headings of a markdown file (outside code blocks)."""
    text = path.read_text("utf-8")
    for _, _, code in fenced_blocks(text):
        text = text.replace(code, "")
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
        out.add(slug.replace(" ", "-"))
    return out
