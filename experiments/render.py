"""A study's README, rendered from its ``README.template.md`` and its ``results.json``.

The template holds every word of the README; the results hold every number, as the study
measured it. The template is Jinja2 (which comes with torch): ``{{ x | f(".3f") }}`` formats a
number with a Python format spec, ``{% for %}`` writes a table's rows. After editing a template,
render the READMEs again from the committed results, without running the studies::

    python -m experiments.render              # every study
    python -m experiments.render gd_modes     # one
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

EXPERIMENTS = Path(__file__).resolve().parent
TEMPLATE = "README.template.md"
RESULTS = "results.json"
STUDIES = sorted(path.parent.name for path in EXPERIMENTS.glob(f"*/{TEMPLATE}"))


def render(study: str, results: Mapping[str, Any]) -> str:
    """``experiments/<study>/README.template.md`` filled in with ``results``."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(EXPERIMENTS / study),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["f"] = format
    return environment.get_template(TEMPLATE).render(results)


def publish(study: str, results: Mapping[str, Any], out: Path) -> None:
    """Write ``out/results.json`` and ``out/README.md`` rendered from it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(render(study, results))
    print(f"wrote {out / RESULTS} and {out / 'README.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Render each named study's README from its committed results."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.render", description=__doc__.splitlines()[0]
    )
    parser.add_argument("studies", nargs="*", help=f"some of {', '.join(STUDIES)} (default: all)")
    studies = parser.parse_args(argv).studies or STUDIES
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        parser.error(f"no study {', '.join(unknown)}; the studies are {', '.join(STUDIES)}")
    for study in studies:
        folder = EXPERIMENTS / study
        results = json.loads((folder / RESULTS).read_text())
        (folder / "README.md").write_text(render(study, results))
        print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    main()
