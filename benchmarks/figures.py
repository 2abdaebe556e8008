"""One results convention: JSON is the record, markdown is generated from it, README.md copies the markdown's tables.

* ``benchmarks/results/<name>.json`` holds what a benchmark measured (per seed) under its ``protocol`` block
  (:func:`protocol`: the split, the seeds or repeats, and what each row is given);
* ``<name>.md`` is ``markdown(json)`` of the benchmark script whose name is the longest prefix of ``<name>``
  (``cold_start_books_text_dim_32.md`` comes from ``cold_start_books.py``);
* README.md marks each copied table with ``<!-- figures: <name>.md table N -->`` ... ``<!-- /figures -->``
  (N counts the markdown's tables from 1), and this script rewrites those blocks.

Run: .venv/bin/python benchmarks/figures.py            regenerate every markdown from its JSON, then README.md
     .venv/bin/python benchmarks/figures.py --check    exit 1 naming every markdown or README block that disagrees
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
README = BENCHMARKS.parent / "README.md"
BLOCK = re.compile(r"(<!-- figures: (?P<name>[\w.-]+\.md) table (?P<number>\d+) -->\n)(?P<body>.*?)(<!-- /figures -->)",
                   re.DOTALL)


def generator(name: str) -> Callable[[dict], str] | None:
    """The ``markdown`` function of the benchmark that writes results ``name`` (a stem), if there is one."""
    scripts = sorted((p.stem for p in BENCHMARKS.glob("*.py") if name == p.stem or name.startswith(p.stem + "_")),
                     key=len)
    if not scripts:
        return None
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    module = importlib.import_module(scripts[-1])
    return getattr(module, "markdown", None)


def protocol(split: str, given: dict[str, str], *, seeds: list[int] | None = None, repeats: int | None = None,
             **more: object) -> dict[str, object]:
    """A results JSON's ``protocol`` block: the ``split`` (what is trained on and what is judged), the ``seeds`` (or
    for timings the ``repeats``), what each row is ``given`` (row -> its inputs and budget), and anything ``more``
    (where settings were chosen, the statistic)."""
    if (seeds is None) == (repeats is None):
        raise ValueError("a protocol names its seeds or, for timings, its repeats (one of them)")
    if not split or not given:
        raise ValueError("a protocol names its split and what each row is given")
    counted = {"seeds": list(seeds)} if seeds is not None else {"repeats": repeats}
    return {"split": split, **counted, "given": dict(given), **more}


def missing_protocol(record: dict) -> list[str]:
    """The parts of the ``protocol`` block that a results JSON lacks (empty when it follows the convention)."""
    block = record.get("protocol")
    if not isinstance(block, dict):
        return ["protocol"]
    return [key for key in ("split", "given") if not block.get(key)] + (
        [] if block.get("seeds") or block.get("repeats") else ["seeds or repeats"])


def generated() -> dict[Path, str]:
    """Each results markdown that a benchmark generates -> what its JSON generates now."""
    out = {}
    for record in sorted(RESULTS.glob("*.json")):
        page = record.with_suffix(".md")
        write = generator(record.stem)
        if write is not None:  # a new results JSON gets its markdown too
            out[page] = write(json.loads(record.read_text()))
    return out


def tables(markdown: str) -> list[str]:
    """The markdown's tables (runs of lines starting with '|'), each with a final newline."""
    found, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append("\n".join(current) + "\n")
            current = []
    if current:
        found.append("\n".join(current) + "\n")
    return found


def readme_blocks(readme: str) -> list[tuple[str, int, str]]:
    """(results markdown name, table number, the README's copy) of every figures block."""
    return [(m["name"], int(m["number"]), m["body"]) for m in BLOCK.finditer(readme)]


def table(name: str, number: int) -> str:
    found = tables((RESULTS / name).read_text())
    if not 1 <= number <= len(found):
        raise ValueError(f"README.md copies table {number} of {name}, which has {len(found)}")
    return found[number - 1]


def copied(readme: str) -> str:
    """README.md with every figures block replaced by the table it names."""
    return BLOCK.sub(lambda m: m[1] + table(m["name"], int(m["number"])) + m[5], readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on any disagreement")
    args = parser.parse_args()
    pages = generated()
    stale = [str(page.relative_to(BENCHMARKS.parent)) for page, text in pages.items()
             if not page.exists() or page.read_text() != text]
    if stale and not args.check:  # the README's blocks are copied from the markdown as it is now
        for page, text in pages.items():
            page.write_text(text)
    readme = README.read_text()
    stale += [f"README.md: {name} table {number}" for name, number, body in readme_blocks(readme)
              if body != table(name, number)]
    copied_from = sorted({name for name, _, _ in readme_blocks(readme)})
    unrecorded = [f"{name.removesuffix('.md')}.json lacks {', '.join(parts)}" for name in copied_from
                  if (parts := missing_protocol(json.loads((RESULTS / name).with_suffix(".json").read_text())))]
    if unrecorded:  # a benchmark's JSON gets its block from the script; no rewrite here can supply it
        sys.exit("results without their protocol: " + "; ".join(unrecorded))
    if args.check:
        if stale:
            sys.exit("out of date (run benchmarks/figures.py): " + ", ".join(stale))
        return
    README.write_text(copied(README.read_text()))
    print("updated: " + (", ".join(stale) or "nothing"))


if __name__ == "__main__":
    main()
