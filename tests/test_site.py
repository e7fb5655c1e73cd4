"""The site checks: what makes "the docs cannot drift from the code" true.

The strict build runs once per test session; every other check reads the Markdown
sources, the snippets and the tests directly, so a failure names the file at fault.
"""

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from pytest_examples import CodeExample, EvalExample, find_examples

ROOT = Path(__file__).resolve().parents[1]
EN, ZH = ROOT / "docs" / "en", ROOT / "docs" / "zh"
INCLUDE = re.compile(r'^(?P<indent>\s*)--8<-- "(?P<target>[^"]+)"\s*$', re.MULTILINE)
HEADING = re.compile(r"^(#{1,6}) (.*)$", re.MULTILINE)
HEADING_ID = re.compile(r"\{ *#([a-z0-9-]+) *\}\s*$")
ADMONITION = re.compile(r"^\s*(?:!!!|\?\?\?\+?) (\w+)", re.MULTILINE)
HL_FENCE = re.compile(
    r'^\s*```\w*[^\n]*hl_lines="([\d\s-]+)"[^\n]*\n(.*?)^\s*```', re.M | re.S
)

# Building the whole site in both languages takes seconds, more on a busy machine.
pytestmark = [pytest.mark.site, pytest.mark.timeout(120)]


def pages(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.md"))


def snippets() -> list[Path]:
    return sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "docs_src").rglob("*.py")
        if p.name != "__init__.py"
    )


def without_code(markdown: str) -> str:
    """Markdown with fenced code removed, so `# comments` are not taken as headings."""
    return re.sub(r"^(\s*)```.*?^\1```", "", markdown, flags=re.M | re.S)


def includes(markdown: str) -> list[str]:
    return [m.group(0).rstrip() for m in INCLUDE.finditer(markdown)]


def structure(page: Path) -> dict[str, list]:
    text = page.read_text(encoding="utf-8")
    prose = without_code(text)
    return {
        "includes": includes(text),
        "heading ids": [
            (len(level), m.group(1) if (m := HEADING_ID.search(title)) else None)
            for level, title in HEADING.findall(prose)
        ],
        "admonitions": ADMONITION.findall(text),
        "code blocks": text.count("```"),
    }


@cache
def section_lines(target: str) -> list[str]:
    """The lines an include puts on the page (a whole file, or one named section)."""
    path, _, section = target.partition(":")
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    if not section:
        return [line for line in lines if "--8<--" not in line]
    start, end = f"# --8<-- [start:{section}]", f"# --8<-- [end:{section}]"
    stripped = [line.strip() for line in lines]
    if start not in stripped or end not in stripped:
        msg = f"{path} has no section {section!r}"
        raise AssertionError(msg)
    body = lines[stripped.index(start) + 1 : stripped.index(end)]
    return [line for line in body if "--8<--" not in line]


# --- the two languages ---------------------------------------------------------


def test_every_page_has_its_twin():
    assert pages(EN) == pages(ZH)


@pytest.mark.parametrize("page", pages(EN), ids=str)
def test_twins_have_the_same_structure(page):
    assert structure(ZH / page) == structure(EN / page)


@pytest.mark.parametrize(
    "page", [root / p for root in (EN, ZH) for p in pages(root)], ids=str
)
def test_every_heading_has_an_explicit_id(page):
    titles = HEADING.findall(without_code(page.read_text(encoding="utf-8")))

    assert [title for _, title in titles if not HEADING_ID.search(title)] == []


def test_chinese_pages_are_in_chinese():
    for page in pages(ZH):
        prose = without_code((ZH / page).read_text(encoding="utf-8"))
        han = len(re.findall(r"[\u4e00-\u9fff]", prose))
        assert han > 0.2 * len(re.findall(r"[A-Za-z]", prose)), page


def test_nav_lists_every_page_once():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(items):
        for item in items:
            if isinstance(item, dict):
                for value in item.values():
                    yield from walk(value) if isinstance(value, list) else [value]
            else:
                yield item

    listed = list(walk(config["nav"]))
    assert sorted(listed) == sorted(str(p) for p in pages(EN))


# --- includes -------------------------------------------------------------------


def all_includes() -> list[str]:
    found = set()
    for root in (EN, ZH):
        for page in pages(root):
            for line in includes((root / page).read_text(encoding="utf-8")):
                found.add(INCLUDE.match(line).group("target"))
    return sorted(found)


@pytest.mark.parametrize("target", all_includes())
def test_every_include_exists_and_is_not_empty(target):
    assert [line for line in section_lines(target) if line.strip()]


def test_highlighted_lines_fall_inside_the_included_code():
    for root in (EN, ZH):
        for page in pages(root):
            for numbers, body in HL_FENCE.findall((root / page).read_text("utf-8")):
                if include := INCLUDE.search(body):
                    count = len(section_lines(include["target"]))
                    highest = max(int(n) for n in re.findall(r"\d+", numbers))
                    assert highest <= count, f"{page}: {numbers} beyond {count} lines"


# --- snippets -------------------------------------------------------------------


@cache
def imported_modules(test_file: Path) -> set[str]:
    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@cache
def shown_in(root: Path) -> set[str]:
    """Every file that some page of this language includes, whole or in part."""
    return {
        INCLUDE.match(line)["target"].partition(":")[0]
        for page in pages(root)
        for line in includes((root / page).read_text(encoding="utf-8"))
    }


@pytest.mark.parametrize("snippet", snippets(), ids=str)
def test_every_snippet_is_shown_in_both_languages_and_tested(snippet):
    module = ".".join(snippet.with_suffix("").parts)
    tests = (ROOT / "tests").rglob("test_*.py")

    assert str(snippet) in shown_in(EN), "no English page includes it"
    assert str(snippet) in shown_in(ZH), "no Chinese page includes it"
    assert any(module in imported_modules(test) for test in tests), "no test imports it"


@pytest.mark.parametrize("snippet", snippets(), ids=str)
def test_every_snippet_is_a_fastapi_app(snippet):
    # Snippets that show a deprecated API on purpose warn at import; their own
    # tests assert that warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        namespace = importlib.import_module(".".join(snippet.with_suffix("").parts))
    assert isinstance(namespace.app, FastAPI)


@pytest.mark.parametrize(
    "command", [["check"], ["format", "--check"]], ids=["ruff check", "ruff format"]
)
def test_snippets_and_tests_are_ruff_clean(command):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            *command,
            "docs_src",
            "tests",
            "hooks",
            "dev.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- inline Python in the pages ---------------------------------------------------


def inline_examples() -> list[CodeExample]:
    return [
        example
        for example in find_examples(str(EN), str(ZH))
        if example.prefix_settings().get("lang", "py") in {"py", "python"}
        and "--8<--" not in example.source
    ]


def test_pages_have_inline_examples_to_check():
    assert inline_examples(), "no inline Python block found: is find_examples broken?"


@pytest.mark.parametrize("example", inline_examples(), ids=str)
def test_inline_python_is_lint_clean_and_runs(
    example: CodeExample, eval_example: EvalExample
):
    eval_example.set_config(line_length=88, target_version="py311")
    eval_example.lint(example)
    eval_example.run(example)


# --- the built site -----------------------------------------------------------------


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    return site


def test_the_strict_build_passes_without_warnings(built_site):
    assert (built_site / "index.html").exists()
    assert (built_site / "zh" / "index.html").exists()


def test_chinese_words_are_search_tokens(built_site):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    (search,) = [p["search"] for p in config["plugins"] if "search" in p]
    separator = re.compile(search["separator"])  # the same syntax in Python and JS
    index = json.loads((built_site / "search" / "search_index.json").read_text("utf-8"))
    tokens = {
        token
        for doc in index["docs"]
        for field in ("title", "text")
        for token in separator.split(doc[field])
    }

    assert {"事件循环", "线程池", "依赖项", "生命周期"} <= tokens


def test_the_chinese_site_is_marked_chinese_and_linked(built_site):
    zh = (built_site / "zh" / "foundations" / "threadpool" / "index.html").read_text(
        "utf-8"
    )
    en = (built_site / "foundations" / "threadpool" / "index.html").read_text("utf-8")

    assert '<html lang="zh"' in zh
    assert '<html lang="en"' in en
    assert 'href="../../zh/foundations/threadpool/" hreflang="zh"' in en
    assert 'href="../../../foundations/threadpool/" hreflang="en"' in zh


def test_api_reference_labels_follow_the_language(built_site):
    en = (built_site / "reference" / "test-harness" / "index.html").read_text("utf-8")
    zh = (built_site / "zh" / "reference" / "test-harness" / "index.html").read_text(
        "utf-8"
    )

    assert "open_stream" in en
    assert "open_stream" in zh
    assert "Parameters:" in en
    assert "参数" in zh
    assert "Parameters:" not in zh


def test_the_glossary_feeds_the_search_dictionary():
    glossary = (ZH / "glossary.md").read_text(encoding="utf-8")
    dictionary = (ROOT / "hooks" / "jieba_user_dict.txt").read_text(encoding="utf-8")
    words = [line.split()[0] for line in dictionary.splitlines() if line.strip()]

    assert [word for word in words if word not in glossary] == []


CJK = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"


@pytest.mark.parametrize("page", pages(ZH), ids=str)
def test_chinese_sentences_are_not_broken_across_lines(page):
    # Browsers render a line break between two Chinese characters as a stray space.
    prose = without_code((ZH / page).read_text(encoding="utf-8"))

    assert re.findall(rf"{CJK}\n[ \t]*{CJK}", prose) == []
