"""The documentation site: MkDocs with the Material theme, built from ``docs/`` (``mkdocs.yml``),
in English and French (mkdocs-static-i18n: ``page.md`` and ``page.fr.md``).

    python -m hw5kit.docsite build [--out DIR]   # mkdocs build --strict (what nox -s docs runs)
    python -m hw5kit.docsite links FILE ...      # every relative link resolves, anchors too
    python -m hw5kit.docsite mermaid [--fetch V] # check (or replace) the vendored Mermaid

``nox -s docs`` runs ``build`` in its own environment (``.nox/docs``, ``hw5kit.devenv.DOCS``).
Strict means a warning fails the build: a link to a missing page or anchor, a page left out
of the navigation, a navigation entry naming no page. The site needs no network, neither to
build nor to be read: Material's own scripts and its search are in the site, web fonts are off
(``theme.font: false``), and Mermaid, which Material would fetch from a CDN, is vendored
(``docs/assets/javascripts/mermaid.min.js``, pinned by ``MERMAID_SHA256``).

Standard library only: the noxfile's docs session and the tests (in .nox/kit) both import it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .paths import ROOT

CONFIG = "mkdocs.yml"
DOCS = ROOT / "docs"
SITE = ROOT / "site"
# Mermaid as Material expects it (a global `mermaid`, major version 11), from the npm package.
MERMAID_VERSION = "11.17.2"
MERMAID = Path("assets") / "javascripts" / "mermaid.min.js"
MERMAID_SHA256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"


class DocsError(Exception):
    """The site did not build (the message holds MkDocs' warnings) or a check failed."""


# ---- building --------------------------------------------------------------------------------
def build_command(out: Path, root: Path = ROOT, python: str | Path | None = None) -> list[str]:
    return [
        str(python or sys.executable),
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(root / CONFIG),
        "--site-dir",
        str(out),
    ]


def build_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["NO_MKDOCS_2_WARNING"] = "1"  # Material's end-of-life banner, printed on every build
    return env


def build(
    out: Path = SITE,
    root: Path = ROOT,
    *,
    python: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """``mkdocs build --strict`` of ``root``'s site into ``out``; returns MkDocs' log.

    Raises DocsError with the warnings when the build fails (strict: any warning fails it)."""
    done = subprocess.run(
        build_command(out, root, python),
        capture_output=True,
        text=True,
        cwd=root,
        env=build_env(env),
        check=False,
    )
    log = done.stdout + done.stderr
    problems = warnings(log)
    if done.returncode != 0 or problems:
        detail = "\n".join(problems) or log[-3000:]
        raise DocsError(f"the documentation site did not build (mkdocs --strict):\n{detail}")
    return log


def warnings(log: str) -> list[str]:
    """MkDocs' warnings and errors in a build log, each with its indented continuation lines
    (the list of pages left out of the navigation is one)."""
    found: list[str] = []
    inside = False
    for line in log.splitlines():
        if line.startswith(("WARNING", "ERROR")):
            found.append(line)
            inside = True
        elif inside and line.startswith((" ", "\t")) and line.strip():
            found[-1] += "\n" + line
        else:
            inside = False
    return found


# ---- relative links in Markdown files (README.md) -------------------------------------------
LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def outside_fences(text: str) -> Iterator[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None:
            if stripped.startswith(fence):
                fence = None
        else:
            yield number, line


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines outside fenced code blocks, inline code removed, numbered from 1."""
    for number, line in outside_fences(text):
        yield number, re.sub(r"`+[^`]*`+", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, GitHub's way (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in outside_fences(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[Link]:
    """The links (and images) of a Markdown file to other files or anchors, not to web or mail
    addresses; code (fenced or inline) is skipped."""
    links = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
                continue
            links.append(Link(path, number, target))
    return links


def broken_links(path: Path) -> list[str]:
    """One message per relative link of ``path`` whose file, or anchor in it, does not exist."""
    problems = []
    for link in relative_links(path):
        name, _, anchor = link.target.partition("#")
        target = (path.parent / name).resolve() if name else path.resolve()
        where = f"{path.name}:{link.line}: {link.target}"
        if not target.exists():
            problems.append(f"{where}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            problems.append(f"{where}: {target.name} has no heading with the anchor #{anchor}")
    return problems


# ---- the vendored Mermaid ----------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_mermaid(docs: Path = DOCS) -> None:
    path = docs / MERMAID
    if not path.is_file():
        raise DocsError(f"{path} is missing: python -m hw5kit.docsite mermaid --fetch")
    if sha256(path) != MERMAID_SHA256:
        raise DocsError(
            f"{path} is not mermaid {MERMAID_VERSION}'s dist/mermaid.min.js (sha256 differs); "
            "restore it with python -m hw5kit.docsite mermaid --fetch"
        )


def fetch_mermaid(version: str = MERMAID_VERSION, docs: Path = DOCS) -> str:
    """Replace the vendored file by npm's ``mermaid@VERSION`` ``dist/mermaid.min.js`` (``npm
    pack``: the registry's tarball, checked by npm); returns its sha256 for MERMAID_SHA256."""
    npm = shutil.which("npm")
    if npm is None:
        raise DocsError("npm is needed to fetch Mermaid (apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="hw5-mermaid-") as tmp:
        done = subprocess.run(
            [npm, "pack", f"mermaid@{version}", "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise DocsError(f"npm pack mermaid@{version} failed:\n{done.stderr[-2000:]}")
        tarball = Path(tmp) / done.stdout.strip().splitlines()[-1]
        import tarfile

        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/dist/mermaid.min.js")
            if member is None:
                raise DocsError(f"mermaid@{version} has no dist/mermaid.min.js")
            data = member.read()
    path = docs / MERMAID
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ---- command line ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.docsite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="mkdocs build --strict into site/ (or --out DIR)")
    b.add_argument("--out", type=Path, default=SITE, help="default: %(default)s")
    lk = sub.add_parser("links", help="check the relative links of Markdown files")
    lk.add_argument("files", nargs="+", type=Path)
    mm = sub.add_parser("mermaid", help="check the vendored Mermaid (or --fetch it with npm)")
    mm.add_argument("--fetch", nargs="?", const=MERMAID_VERSION, metavar="VERSION")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            check_mermaid()
            print(f"building the documentation site into {args.out} (mkdocs build --strict)")
            build(args.out)
            print(
                f"done: open {args.out / 'index.html'}, or serve it: python -m http.server "
                f"--bind 127.0.0.1 --directory {args.out}"
            )
            return 0
        if args.command == "links":
            problems = [p for f in args.files for p in broken_links(f)]
            print("\n".join(problems) or "every relative link resolves")
            return 1 if problems else 0
        if args.fetch:
            digest = fetch_mermaid(args.fetch)
            print(f"wrote {DOCS / MERMAID} (mermaid {args.fetch}); sha256 {digest}")
            return 0
        check_mermaid()
        print(f"{DOCS / MERMAID} is mermaid {MERMAID_VERSION}")
        return 0
    except DocsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
