"""The core stays free of discord.py, so it can be tested and reasoned about alone; and its
lower packages do not import the ones above them (`money` below `config` and `engine`).
Across the whole repository: no import cycle, no cog importing a cog, and no module taking
another's private names (ruff's banned-api keeps `discord` imports at the edge too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("storage", "engine", "admission", "money", "wavespeed", "config", "ops")


def core_modules() -> list[str]:
    modules = []
    for package in CORE:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_core_modules_do_not_import_discord() -> None:
    modules = core_modules()
    assert "engine.engine" in modules and "storage.credits" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'discord' or m.startswith('discord.'))\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"the core imported {result.stdout.strip()}"


def ours_loaded_by(package: str) -> set[str]:
    """Our modules (any top-level package of this repository) that a fresh interpreter has
    loaded once it imported every module of `package`, that package's own left out."""
    own = [m for m in core_modules() if m.split(".")[0] == package]
    script = (
        "import importlib, sys\n"
        f"for name in {own!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {"bot"}
    return {m for m in loaded if m.split(".")[0] in top and m.split(".")[0] != package}


def test_money_imports_nothing_of_ours_but_the_wavespeed_models() -> None:
    assert ours_loaded_by("money") <= {"wavespeed", "wavespeed.models"}


def test_config_imports_only_money_and_wavespeed() -> None:
    above = {m for m in ours_loaded_by("config") if m.split(".")[0] not in ("money", "wavespeed")}
    assert above == set(), f"config imported {sorted(above)}"



def test_the_engine_runs_jobs_and_imports_no_admission_rule() -> None:
    """Admission decides before anything is charged; the engine runs what was admitted."""
    assert {m for m in ours_loaded_by("engine") if m.split(".")[0] == "admission"} == set()
    assert ours_loaded_by("admission") & {"engine.engine", "discord", "cogs"} == set()

# -- the import graph, read from the source (ast): every import statement counts, those inside
# functions and under TYPE_CHECKING too, so a cycle cannot hide behind a local import.

def our_modules() -> dict[str, Path]:
    """Every module of this repository: bot.py and each package's files, by dotted name."""
    found = {"bot": ROOT / "bot.py"}
    for package in sorted(p for p in ROOT.iterdir() if (p / "__init__.py").is_file()):
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = our_modules()


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(name: str) -> dict[str, set[str]]:
    """Our modules that `name` imports, each with the names it takes from it ("" for the
    module itself: `import a.b`, or `from a import b` where a.b is a module)."""
    taken: dict[str, set[str]] = {}
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    taken.setdefault(alias.name, set()).add("")
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(name, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    taken.setdefault(f"{source}.{alias.name}", set()).add("")
                elif source in MODULES:
                    taken.setdefault(source, set()).add(alias.name)
    taken.pop(name, None)
    return taken


GRAPH = {name: set(imports_of(name)) for name in MODULES}


def test_the_graph_sees_our_imports() -> None:
    assert "discord_layer.buttons" in GRAPH["discord_layer.status"]
    assert "storage.jobs" in GRAPH["engine.engine"]
    assert "discord_layer.services" in GRAPH["cogs.generate"]


def test_cogs_import_no_cog_and_look_up_no_cog_by_name() -> None:
    """What cogs share lives in discord_layer/; a cog reaching another by import or by
    `bot.get_cog("...")` couples them through their load order."""
    cogs = [name for name in MODULES if name.startswith("cogs.")]
    assert "cogs.credits" in cogs
    imported = {name: sorted(m for m in GRAPH[name] if m.split(".")[0] == "cogs")
                for name in cogs}
    assert {name: ms for name, ms in imported.items() if ms} == {}
    for name in [*cogs, *(m for m in MODULES if m.startswith("discord_layer."))]:
        calls = [node.lineno for node in ast.walk(_tree(name))
                 if isinstance(node, ast.Attribute) and node.attr == "get_cog"]
        assert calls == [], f"{name} looks up a cog by name at lines {calls}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_our_modules() -> None:
    assert _cycles(GRAPH) == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_takes_another_modules_private_names() -> None:
    """Neither `from x import _name` nor `x._name` on an imported module of ours. Tests are
    exempt: they may open up what they test (bot._Stopper, monkeypatched helpers)."""
    reaches = []
    for name in MODULES:
        if name.split(".")[0] == "tests":
            continue
        taken = imports_of(name)
        reaches += [f"{name}: from {source} import {n}"
                    for source, names in taken.items() for n in sorted(names) if _private(n)]
        aliases = {}
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Import):
                aliases.update({(a.asname or a.name): a.name for a in node.names
                                if a.name in MODULES})
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(name, node)
                aliases.update({(a.asname or a.name): f"{source}.{a.name}" for a in node.names
                                if f"{source}.{a.name}" in MODULES})
        for node in ast.walk(_tree(name)):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                reaches.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    assert reaches == []


def test_the_readme_module_map_names_every_package_and_module() -> None:
    """The README's Layout table is the map a new maintainer reads: every package is in it,
    and in the packages it describes file by file, every module is named."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    missing = [p for p in packages if f"`{p}/`" not in layout]
    assert missing == [], f"packages not in the README's Layout: {missing}"
    described = ("admission", "config", "discord_layer", "engine", "money", "storage", "wavespeed")
    unnamed = [f"{package}/{path.name}" for package in described
               for path in sorted((ROOT / package).glob("*.py"))
               if path.name != "__init__.py" and f"`{path.name}`" not in layout]
    assert unnamed == [], f"modules the README's Layout does not name: {unnamed}"
