"""The Extensions Index catalogue entry ``BackSplit.json``, checked as the index's CI checks it, offline.

The rules come from Slicer/ExtensionsIndex ``scripts/check_description_files.py`` (commit 07f1d1b) and the schema from
Slicer ``Schemas/``; both are copied under ``Testing/data/extensions-index/`` (see its README for sources). The entry is
validated against the schema it names and against what the top-level ``CMakeLists.txt`` declares (name, dependencies,
category, icon and screenshot files), read with the same regular expressions the index uses. Checks that need the
network (clone, GitHub topic, downloading the image URLs) are replaced by checking that the files the raw URLs point
to are in this repository.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "extensions-index"
ENTRY = REPO / "BackSplit.json"
CMAKE = REPO / "CMakeLists.txt"
RULES = json.loads((DATA / "extensions-index-rules.json").read_text(encoding="utf-8"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCREENSHOT_MAX_BYTES = 300 * 1024  # our own limit: the README and the catalogue load it


def _entry() -> dict:
    return json.loads(ENTRY.read_text(encoding="utf-8"))


def _cmake_text() -> str:
    return CMAKE.read_text(encoding="utf-8")


def _cmake_set(name: str) -> list[str]:
    """Value of ``set(<name> ...)`` in the top-level CMakeLists.txt as a CMake list (quoted string or bare words)."""
    match = re.search(rf"^\s*set\s*\(\s*{name}\s+(.*?)\)\s*(#.*)?$", _cmake_text(), re.MULTILINE)
    assert match, f"set({name} ...) not found in {CMAKE}"
    value = match.group(1).strip()
    if value.startswith('"'):
        value = value.strip('"')
        return [value] if name != "EXTENSION_DEPENDS" else [v for v in re.split(r"[;\s]+", value) if v]
    return [v for v in re.split(r"[;\s]+", value) if v]


def _index_pattern(key: str) -> list[str]:
    """What the index's CI reads from CMakeLists.txt with its own pattern (``cmake_patterns`` in the rules file)."""
    return re.findall(RULES["cmake_patterns"][key], _cmake_text(), re.IGNORECASE | re.MULTILINE)


def _github_owner_repo(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    assert parts.netloc.lower() == "github.com", url
    owner, repo = parts.path.strip("/").split("/")[:2]
    return owner, repo[: -len(".git")] if repo.endswith(".git") else repo


@pytest.mark.parametrize("schema_file", ["slicer-extension-catalog-entry-schema-v1.0.1.json",
                                         "slicer-extension-catalog-entry-schema-v1.0.2.json"])
def test_entry_validates_against_the_catalogue_schema(schema_file):
    """v1.0.1: the schema the entry names (the index CI downloads it); v1.0.2: the index's pre-commit hook."""
    jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema (listed in the test extras)")
    schema = json.loads((DATA / schema_file).read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(_entry())]
    assert not errors, errors


def test_entry_names_the_shipped_schema_and_is_formatted_as_the_index_wants():
    schema_file = DATA / "slicer-extension-catalog-entry-schema-v1.0.1.json"
    referenced = json.loads(schema_file.read_text(encoding="utf-8"))["$id"]
    entry = _entry()
    assert entry["$schema"] == referenced
    raw = ENTRY.read_bytes()
    assert b"\r" not in raw, "CR or CRLF line endings (check_json_file_format wants LF only)"
    text = raw.decode("utf-8")
    # prettier (the index's pre-commit) writes 2-space indents, one array item per line, a final newline
    assert text == json.dumps(entry, indent=2, ensure_ascii=False) + "\n"
    assert entry.get("scm_revision"), "scm_revision: a branch name (main) so updates need no new pull request"
    assert entry.get("tier") in (1, 3, 5)


def test_name_matches_cmake_project():
    """check_extension_name and check_cmakelists_content: file name == project(), no 'Slicer' prefix."""
    projects = _index_pattern("project")
    assert projects, "no project() in CMakeLists.txt"
    assert projects[0].strip("\"'") == ENTRY.stem == "BackSplit"
    assert not ENTRY.stem.lower().startswith("slicer")


def test_build_dependencies_match_extension_depends():
    depends = _cmake_set("EXTENSION_DEPENDS")
    depends = [] if depends == ["NA"] else depends
    assert _entry().get("build_dependencies", []) == depends


def test_category_matches_cmake_and_is_accepted_by_the_index():
    category = _entry()["category"]
    assert _cmake_set("EXTENSION_CATEGORY") == [category]
    assert category in RULES["accepted_categories"]


def test_scm_url_is_the_homepage_repository_with_an_accepted_name_and_scheme():
    entry = _entry()
    scheme = urllib.parse.urlsplit(entry["scm_url"]).scheme
    assert scheme in RULES["scm_url_schemes"]
    owner, repo = _github_owner_repo(entry["scm_url"])
    assert any(repo.startswith(prefix) for prefix in RULES["repository_name_prefixes"]), repo
    assert _github_owner_repo(_cmake_set("EXTENSION_HOMEPAGE")[0]) == (owner, repo)


def _raw_url_to_repo_path(url: str) -> Path:
    """https://raw.githubusercontent.com/<owner>/<repo>/<revision>/<path>: same repository and revision as the entry;
    returns <path> inside this checkout."""
    entry = _entry()
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "raw.githubusercontent.com", \
        f"{url}: use the raw download URL (https://raw.githubusercontent.com/...), not a web page"
    owner, repo, revision, relative = parts.path.lstrip("/").split("/", 3)
    assert (owner, repo) == _github_owner_repo(entry["scm_url"]), url
    built = entry["scm_revision"]
    assert revision == built, f"{url}: revision {revision!r}, the entry builds {built!r}"
    return REPO / relative


def test_icon_url_points_to_a_png_in_this_repository():
    urls = _index_pattern("icon_url")
    assert len(urls) == 1, "EXTENSION_ICONURL as the index reads it"
    path = _raw_url_to_repo_path(urls[0].strip())
    assert path.is_file(), f"{urls[0]} -> {path} is not in the repository"
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_screenshot_urls_point_to_small_pngs_in_this_repository():
    matches = _index_pattern("screenshot_urls")
    assert len(matches) == 1, "EXTENSION_SCREENSHOTURLS as the index reads it (no space before ')')"
    urls = matches[0].split()
    assert urls
    for url in urls:
        path = _raw_url_to_repo_path(url)
        assert path.is_file(), f"{url} -> {path} is not in the repository"
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size < SCREENSHOT_MAX_BYTES, f"{path}: {path.stat().st_size} bytes"


def test_license_file_in_repository_root():
    assert any((REPO / name).is_file() for name in RULES["license_file_names"])


def test_cmake_states_supported_releases_and_contributors():
    assert "Requires 3D Slicer 5.10 or later" in _cmake_set("EXTENSION_DESCRIPTION")[0]
    assert _cmake_set("EXTENSION_CONTRIBUTORS") == ["BackSplit contributors"]


def test_screenshot_is_the_readme_top_picture():
    """One picture of the result for both the catalogue and the README (issue 22): the README's first image."""
    urls = _index_pattern("screenshot_urls")[0].split()
    first = re.search(r"!\[[^\]]*\]\(([^)\s]+)\)", (REPO / "README.md").read_text(encoding="utf-8")).group(1)
    assert _raw_url_to_repo_path(urls[0]) == REPO / first == REPO / "docs" / "images" / "slicer-result.png"
