"""docs/experiments.md's examples are what the code answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from recommender.experiments import assign_variant, build_report, control_of

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "experiments.md").read_text()


def test_example_request_gets_the_variant_shown() -> None:
    """The opening example defines an experiment, asks for one user's list and shows the
    answer: that user hashes to the variant shown (it once showed u42 in `control`, which
    the hash puts in `treatment`, so the documented holdout answer never came)."""
    block = DOC.split("```sh", 1)[1].split("```", 1)[0]
    experiment_id = re.search(r"/v1/admin/experiments/([\w-]+)", block).group(1)
    body = json.loads(re.search(r"-d '(.*?)'", block, re.S).group(1))
    user = re.search(r"/v1/users/([^/]+)/recommendations", block).group(1)
    shown = json.loads(re.search(r'"experiment":(\{[^}]*\})', block).group(1))
    names = [v["name"] for v in body["variants"]]
    variant = assign_variant(experiment_id, user, names, [v["weight"] for v in body["variants"]])
    assert shown == {"id": experiment_id, "variant": variant}, (user, variant)
    serve = {v["name"]: v["serve"] for v in body["variants"]}[variant]
    assert f'"source":"{serve}"' in block.replace(" ", "")


def _number(pattern: str, text: str) -> float:
    return float(re.search(pattern, text).group(1))


def test_report_example_is_what_the_report_computes() -> None:
    """The report example's lift interval, difference and sample-ratio p-value are the
    ones recommender.experiments computes from its counts (the relative interval moved
    to the log ratio and the example kept the old one; its p-value was never 0.43 for a
    1,000 / 1,010 split of 50 / 50), and it has only the report's keys."""
    example = DOC.split("## The report", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    rows = re.findall(r'\{"name": "(\w+)", "entities": (\d+),.*?(?:"purchasers": (\d+)|'
                      r'"conversion": ([\d.]+))', example, re.S)
    counts = {}
    for name, entities, purchasers, conversion in rows:
        n = int(entities)
        counts[name] = {"entities": n, "purchasers": int(purchasers) if purchasers
                        else round(float(conversion) * n)}
    names = list(counts)
    report = build_report("x", [(name, 1 / len(names)) for name in names], counts)
    treated = next(r for r in report["variants"] if r["name"] != control_of(names))
    conversion = treated["lift"]["conversion"]
    shown = re.search(r'"conversion": \{"value": ([\d.-]+), "ci95": \[([\d.-]+), ([\d.-]+)\],'
                      r'\s*"difference": \{"value": ([\d.-]+), "ci95": \[([\d.-]+), ([\d.-]+)\]',
                      example)
    computed = [conversion["value"], *conversion["ci95"], conversion["difference"]["value"],
                *conversion["difference"]["ci95"]]
    for text, value in zip(shown.groups(), computed, strict=True):
        places = len(text.split(".")[1]) if "." in text else 0
        assert abs(float(text) - value) <= 0.5 * 10 ** -places, (text, value)
    p = _number(r'"srm_p_value": ([\d.]+)', example)
    assert abs(p - report["srm_p_value"]) < 0.005, (p, report["srm_p_value"])
    top_keys = set(re.findall(r'"(\w+)":', example.split('"variants"', 1)[0]))
    assert top_keys <= set(report), top_keys - set(report)
