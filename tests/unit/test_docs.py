"""Docs that must stay true to the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"STREAMREC_{n.upper()}" not in readme]
    assert not missing, f"README configuration table lacks: {missing}"


def test_readme_names_every_cli_command() -> None:
    from streamrec.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in commands.choices if f"streamrec {c}" not in readme]
    assert not missing, f"README CLI table lacks: {missing}"


def test_operations_topic_table_names_every_topic() -> None:
    """docs/operations.md's table of what `streamrec topics create` makes lists each topic
    of core.topics.topic_specs (the `forgotten` topic was once left out)."""
    from core.topics import topic_specs

    settings = Settings()
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Topics: `streamrec topics create`", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| `")}
    app_id = f"{settings.app_id}-"
    missing = [spec.name for spec in topic_specs(settings)
               if not any(row.startswith(f"`{spec.name}`")
                          or (spec.name.startswith(app_id)
                              and row.startswith(f"`<app id>-{spec.name[len(app_id):]}`"))
                          for row in rows)]
    assert not missing, f"docs/operations.md's topic table lacks: {missing}"


def _shown_default(value: object) -> str:
    """A default as the README configuration table writes it (as `streamrec config`)."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def test_readme_defaults_equal_the_code() -> None:
    """Every default in README's configuration table is the field's default."""
    wrong = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if not line.startswith("| `STREAMREC_"):
            continue
        name, shown = (cell.strip() for cell in line.split("|")[1:3])
        field = Settings.model_fields.get(name.strip("`").removeprefix("STREAMREC_").lower())
        assert field is not None, f"README names {name}, which is no setting"
        if field.default is None:  # unset: decided at run time, the cell says how
            continue
        if shown != _shown_default(field.default):
            wrong.append(f"{name}: README {shown}, code {_shown_default(field.default)}")
    assert not wrong, "README configuration defaults differ from core/settings.py:\n" + "\n".join(
        wrong)


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "sdk/js/README.md",
        ROOT / "kafka-broker/README.md"]
ENV_NAME = re.compile(r"STREAMREC_[A-Z0-9_]*[A-Z0-9]")
CODE_DIRS = ("core", "api", "stream", "streamrec", "recommender", "schemas", "scripts", "tests")


def test_documented_variables_exist() -> None:
    """Every STREAMREC_* name in the docs, compose, the Makefile, CI and the CLI's help is a
    setting or read somewhere in the code (test switches such as STREAMREC_SLOW_TESTS)."""
    from streamrec.cli import build_parser

    read = {f"STREAMREC_{n.upper()}" for n in Settings.model_fields}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "test_docs.py":
                read.update(ENV_NAME.findall(path.read_text()))
    makefile = (ROOT / "Makefile").read_text()
    read.update(re.findall(r"\$\$\{?(STREAMREC_[A-Z0-9_]+)", makefile))  # read by its recipes
    parser = build_parser()
    sources = {p.name: p.read_text() for p in DOCS}
    sources.update({name: (ROOT / name).read_text()
                    for name in ("docker-compose.yml", "Makefile", ".ci/run")})
    sources["--help"] = parser.format_help() + "".join(
        sub.format_help() for action in parser._actions
        if isinstance(action, argparse._SubParsersAction) for sub in action.choices.values())
    unknown = sorted({f"{where}: {name}" for where, text in sources.items()
                      for name in ENV_NAME.findall(text) if name not in read})
    assert not unknown, f"variables nothing reads: {unknown}"


def _github_anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a markdown file's headings."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).replace("`", "").strip().lower())
            slug = slug.replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_relative_links_resolve() -> None:
    """Relative links between the docs name files that exist and headings they have."""
    broken = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                linked = (doc.parent / path) if path else doc
                where = f"{doc.relative_to(ROOT)}:{number}: {target}"
                if not linked.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in _github_anchors(linked):
                    broken.append(f"{where} (no such heading)")
    assert not broken, f"broken links: {broken}"


#: The commands whose options live in a module of their own (``streamrec.cli``'s delegates).
NODE_MODULE = {"simulate": "streamrec.sim.simulate", "demo": "streamrec.ops.demo",
               "eval": "streamrec.eval.offline", "replay": "streamrec.ops.replay",
               "experiments": "streamrec.ops.experiments", "load": "streamrec.ops.load",
               **{f"bench {b}": f"streamrec.bench.{b}"
                  for b in ("freshness", "ingest", "serve", "train", "dashboard")}}


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``"cmd"`` / ``"cmd sub"`` → the parser of its options, delegated commands' included."""
    import importlib

    found: dict[str, argparse.ArgumentParser] = {}

    def walk(node: argparse.ArgumentParser, path: str) -> None:
        if path and node.get_default("passthrough"):  # a KeyError: add it to NODE_MODULE
            node = argparse.ArgumentParser()
            importlib.import_module(NODE_MODULE[path]).configure_parser(node)
        if path:
            found[path] = node
        subs = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{path} {name}".strip())

    walk(parser, "")
    return found


def _options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """``"cmd"`` / ``"cmd sub"`` → its options, delegated commands' included."""
    return {path: {o for a in node._actions for o in a.option_strings}
            for path, node in command_parsers(parser).items()}


def test_documented_cli_options_exist() -> None:
    """Each `streamrec CMD --option` written in the docs is an option of that command."""
    from streamrec.cli import build_parser

    options = _options(build_parser())
    wrong = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in re.finditer(r"streamrec ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?"
                                     r"([^`|\n]*)", line):
                first, second, rest = match.groups()
                path = f"{first} {second}" if f"{first} {second}" in options else first
                if path not in options:
                    continue
                rest = re.split(r"&&|;|#|streamrec ", rest)[0]
                for option in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", rest):
                    if option not in options[path]:
                        wrong.append(f"{doc.relative_to(ROOT)}:{number}: {path} {option}")
    assert not wrong, f"options the CLI does not have: {wrong}"


_ROUTE = re.compile(r"((?:(?:GET|POST|PUT|DELETE)`/`)*)(GET|POST|PUT|DELETE) (/[^`?\s]*)")


def _route_key(method: str, path: str) -> tuple[str, str]:
    """A route with its parameter names blanked (README writes `{id}` for `{experiment_id}`)."""
    return method, re.sub(r"\{[^}]*\}", "{}", path)


def test_readme_endpoint_table_matches_openapi() -> None:
    """README's HTTP API table names every route of the OpenAPI document, and every route
    it names is served (the dashboard page, outside the schema, is checked separately)."""
    from api.app import create_app
    from api.routes.dashboard import router as dashboard

    section = (ROOT / "README.md").read_text().split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            for more, last, path in _ROUTE.findall(line.split("|")[1]):
                for method in [*re.findall(r"[A-Z]+", more), last]:
                    documented.add(_route_key(method, path))
    app = create_app(Settings())
    served = {_route_key(method.upper(), path)
              for path, item in app.openapi()["paths"].items() for method in item
              if method != "head"}
    assert ("GET", "/dashboard") in {_route_key(m, getattr(r, "path", ""))
                                     for r in dashboard.routes for m in getattr(r, "methods", ())}
    assert documented - served == {("GET", "/dashboard")}, "README names routes not served"
    assert not served - documented, f"README's HTTP API table lacks {served - documented}"


def test_openapi_lists_the_answers_of_keyed_routes() -> None:
    """Every route that takes a key documents 401, 403 and 429 (README: read and admin
    keys are rate-limited per request, tracking writes per event); the item stats route
    once left 429 out although its admin key is rate-limited like every other."""
    from api.app import create_app

    doc = create_app(Settings()).openapi()
    lacking = [f"{method.upper()} {path}: {sorted(missing)}"
               for path, item in doc["paths"].items() for method, op in item.items()
               if "401" in op["responses"] or path.startswith("/v1/admin")
               if (missing := {"401", "403", "429"} - set(op["responses"]))]
    assert not lacking, f"keyed routes whose documented answers lack codes: {lacking}"


def test_documented_make_targets_exist() -> None:
    """Each `make TARGET` the docs tell a reader to run (in backticks or a code block) is
    a target of the Makefile."""
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    wrong = []
    for doc in DOCS:
        in_code = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_code = not in_code
            commands = re.findall(r"`make ([^`]*)`", line)
            if in_code and line.startswith("make "):
                commands.append(re.split(r"#|&&|;", line[5:])[0])
            wrong += [f"{doc.relative_to(ROOT)}:{number}: make {word}"
                      for command in commands for word in command.split()
                      if "=" not in word and word not in targets]
    assert not wrong, f"make targets the Makefile does not have: {wrong}"


def test_bounded_state_table_names_every_per_client_key() -> None:
    """Every key family of core/redis_keys' layout that a client's ids create (per
    entity, per item, per experiment) is named in docs/reliability.md's bounded-state
    table with its bound."""
    layout = (ROOT / "core" / "redis_keys.py").read_text()
    doc = (ROOT / "docs" / "reliability.md").read_text()
    table = doc.split("## Bounded state and capacity", 1)[1].split("Not bounded by these", 1)[0]
    families = set()
    for key in re.findall(r"^p ((?:u|i|exp|expout):\S+)", layout, flags=re.MULTILINE):
        prefix, _, rest = key.partition(":")
        if prefix in ("exp", "expout"):
            families.add(f"{prefix}:")
        elif prefix == "i":
            families.add(":" + rest.rsplit(":", 1)[1].split("[")[0].split("|")[0])
    missing = sorted(f for f in families if f not in table)
    assert "`u:{entity}:*`" in table
    assert not missing, f"docs/reliability.md bounded-state table lacks {missing}"


def test_openapi_context_says_buy_again_is_opt_in() -> None:
    """The user endpoint's `context` description is what a frontend developer reads in
    /docs: it once promised "consumables this shopper buys again" at checkout although
    the API serves them only with `STREAMREC_BUY_AGAIN=true` (off by default, README)."""
    from api.app import create_app

    assert Settings().buy_again is False
    doc = create_app(Settings()).openapi()
    op = doc["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    (context,) = [p for p in op["parameters"] if p["name"] == "context"]
    text = context["description"]
    checkout = text[text.index("`checkout`"):]
    assert "STREAMREC_BUY_AGAIN" in checkout, text


def test_train_help_names_every_progress_stage() -> None:
    """`streamrec train --help` and docs/operations.md name each stage its progress bars
    show: the help once said only "the read and the fit" after the wait, the similar and
    user lists and the live wait became bars of their own."""
    from streamrec.cli import build_parser
    from streamrec.commands import TRAIN_STAGE_UNITS

    parser = build_parser()
    (subs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    help_text = " ".join(subs.choices["train"].format_help().split())
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert not [s for s in TRAIN_STAGE_UNITS if s not in help_text], help_text
    assert not [s for s in TRAIN_STAGE_UNITS if f"`{s}`" not in operations]


def test_readme_dashboard_row_names_every_part_of_the_answer() -> None:
    """README's `GET /v1/admin/dashboard` row names each part of the answer (it once left
    out `experiments`, the running experiments' reports the page's lift table shows), and
    the route's OpenAPI description names the experiments too (it stopped at attribution)."""
    from api.dashboard_feed import DashboardFeed

    feed = DashboardFeed(Settings(), redis=None)  # type: ignore[arg-type]  # not read here
    pipeline = {"topics": {}, "generated_at": 0.0, "processed": 0, "lag": 0,
                "dead_lettered": 0}
    answer = feed._assemble(pipeline, {"trending": []}, None)
    (row,) = [line for line in (ROOT / "README.md").read_text().splitlines()
              if line.startswith("| `GET /v1/admin/dashboard`")]
    missing = [k for k in answer if k not in ("generated_at", "refresh_s")
               and f"`{k}`" not in row]
    assert not missing, f"README's dashboard row lacks {missing}"
    from api.app import create_app

    described = create_app(Settings()).openapi()["paths"]["/v1/admin/dashboard"]["get"][
        "description"]
    assert "experiment" in described, f"/docs' dashboard description lacks them: {described}"


KEY_EXAMPLE = re.compile(r"STREAMREC_(TRACKING|READ|ADMIN)_KEYS=([^\s`'\"]+)")


def test_documented_example_keys_start_an_api() -> None:
    """A command in the docs that sets example keys is copied as it stands: the API must
    accept those keys (long enough, one role each), or the command fails at `up`."""
    from api.auth import InsecureConfig, check_config

    refused = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            keys = {role.lower(): value for role, value in KEY_EXAMPLE.findall(line)
                    if value.strip(".")}  # "..." is a placeholder
            if not keys:
                continue
            settings = Settings(**{f"{role}_keys": value for role, value in keys.items()})
            try:
                check_config(settings)
            except InsecureConfig as exc:
                refused.append(f"{path.relative_to(ROOT)}:{number}: {exc}")
    assert not refused, refused


def test_page_hide_key_is_described_as_the_sdk_sends_it() -> None:
    """The browser SDK sends on page hide by keepalive `fetch` (a beacon only where that is
    missing), with the key as `?key=`; the OpenAPI description of `key` and the SDK
    README's list of what the API provides once still said `sendBeacon` alone."""
    from api.app import create_app

    outbox = (ROOT / "sdk" / "js" / "src" / "outbox.ts").read_text()
    assert "keepalive: away" in outbox, "the SDK no longer sends by keepalive fetch"
    doc = create_app(Settings()).openapi()
    (key,) = [p for p in doc["paths"]["/v1/events"]["post"]["parameters"]
              if p["name"] == "key"]
    provides = (ROOT / "sdk" / "js" / "README.md").read_text().split(
        "## What the API provides", 1)[1].split("\n## ", 1)[0]
    query_line = provides[provides.index("the `key` query"):].split("\n- ", 1)[0]
    assert "keepalive" in key["description"], key["description"]
    assert "keepalive" in query_line, query_line
