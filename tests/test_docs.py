"""The documentation is self-contained: every reference it makes points into this repository.

- Every relative link and image of README.md and docs/**/*.md resolves to a file of the repository,
  and a ``#fragment`` into a Markdown file to one of its headings (GitHub's slugs) or explicit
  ``<a id="...">`` anchors.
- Every ``docs/...`` path named in a Python or Markdown file exists (with its anchor, if it has one).
- Every repository path quoted as code in the Markdown (``sims/halos/catalog.py``) exists.
- No file cites documents that live outside the repository.

"The repository" is what git tracks plus untracked files that git does not ignore; without git,
the files on disk less the usual ignored folders.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from functools import cache
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist", "catalog", "reports"}
# Names of documents kept outside the repository, which nothing in it may cite; spelled in pieces
# so that this file passes its own check.
FOREIGN_DOCUMENTS = ("ANCH" + "ORS", "DES" + "IGN.md")
CODE_DIRS = ("data_catalog", "sims", "pipeline", "surrogates", "flows", "tests", "docs")

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<[a-z]+\b[^>]*?\b(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")
DOCS_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]*\w)(#[\w-]+)?")
REPO_PATH = re.compile(rf"^(?:{'|'.join(CODE_DIRS)})/[\w./-]*\.[A-Za-z0-9]+$")


@cache
def repo_files() -> frozenset[str]:
    """Paths (POSIX, relative to the root) of the repository's files that exist on disk."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode("utf-8", "surrogateescape")
        names = {name for name in out.split("\0") if name}
    except (OSError, subprocess.SubprocessError):
        names = {
            path.relative_to(ROOT).as_posix()
            for path in ROOT.rglob("*")
            if path.is_file()
            and not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in path.relative_to(ROOT).parts)
        }
    return frozenset(name for name in names if (ROOT / name).is_file())


@cache
def repo_dirs() -> frozenset[str]:
    return frozenset(str(parent) for name in repo_files() for parent in PurePosixPath(name).parents)


def markdown_files() -> list[str]:
    return sorted(n for n in repo_files() if n == "README.md" or (n.startswith("docs/") and n.endswith(".md")))


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker[0] * len(marker)
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text lowercased, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(name: str) -> frozenset[str]:
    """The fragments a Markdown file of the repository defines."""
    text = (ROOT / name).read_text(encoding="utf-8")
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of the links, images and reference definitions outside code."""
    found = []
    for number, line in prose_lines(text):
        line = CODE_SPAN.sub("code", line)
        targets = INLINE_LINK.findall(line) + HTML_LINK.findall(line)
        reference = REFERENCE_LINK.match(line)
        if reference:
            targets.append(reference.group(1))
        found += [(number, target) for target in targets]
    return found


def check_target(source: str, target: str) -> str | None:
    """Why ``target`` (a link in the file ``source``) does not resolve, or None when it does."""
    path, _, fragment = target.partition("#")
    path = urllib.parse.unquote(path)
    if not path:
        resolved = source
    else:
        base = PurePosixPath() if path.startswith("/") else PurePosixPath(source).parent
        parts: list[str] = []
        for part in (base / path.lstrip("/")).parts:
            if part == "..":
                if not parts:
                    return f"{target}: leaves the repository"
                parts.pop()
            elif part != ".":
                parts.append(part)
        resolved = "/".join(parts)
        if resolved not in repo_files() and resolved not in repo_dirs():
            return f"{target}: {resolved} is not a file of the repository"
    if fragment and resolved.endswith(".md") and resolved in repo_files() and fragment not in anchors(resolved):
        return f"{target}: {resolved} has no heading or anchor #{fragment}"
    return None


def test_markdown_links_resolve_inside_the_repository():
    problems = []
    for name in markdown_files():
        for number, target in links((ROOT / name).read_text(encoding="utf-8")):
            if EXTERNAL.match(target):
                continue
            problem = check_target(name, target)
            if problem:
                problems.append(f"{name}:{number}: {problem}")
    assert not problems, "dangling links:\n" + "\n".join(problems)


def test_docs_paths_named_in_code_and_docs_exist():
    problems = []
    names = [n for n in repo_files() if n.endswith(".py")] + markdown_files()
    for name in sorted(names):
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for path, fragment in sorted(set(DOCS_PATH.findall(line))):
                path = path.rstrip(".")
                problem = check_target("", path + fragment)
                if problem:
                    problems.append(f"{name}:{number}: {problem}")
    assert not problems, "paths under docs/ that do not exist:\n" + "\n".join(problems)


def test_code_paths_quoted_in_the_docs_exist():
    problems = []
    for name in markdown_files():
        for number, line in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
            for _, span in CODE_SPAN.findall(line):
                path = span.strip().split("::")[0]
                if REPO_PATH.match(path) and path not in repo_files():
                    problems.append(f"{name}:{number}: `{span}` is not a file of the repository")
    assert not problems, "files quoted in the docs that do not exist:\n" + "\n".join(problems)


def test_nothing_cites_documents_outside_the_repository():
    problems = []
    for name in sorted(repo_files()):
        data = (ROOT / name).read_bytes()
        for word in FOREIGN_DOCUMENTS:
            if word.encode() in data:
                lines = [i for i, line in enumerate(data.splitlines(), 1) if word.encode() in line]
                problems.append(f"{name}: {word} on line(s) {lines[:10]}")
    assert not problems, "citations of documents that are not in the repository:\n" + "\n".join(problems)


def test_slugs_follow_github():
    assert slug("Pendulum: EMLP protocol") == "pendulum-emlp-protocol"
    assert slug("Catalog I/O throughput (2026-11-22)") == "catalog-io-throughput-2026-11-22"
    assert slug("The main job: `eqs run --preset demo` and its OOD report") == (
        "the-main-job-eqs-run---preset-demo-and-its-ood-report"
    )
    assert slug("Regimes over rainfall ([protocol](protocols.md#rietkerk))") == "regimes-over-rainfall-protocol"
