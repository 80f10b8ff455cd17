"""``streamrec experiments``: list experiments and print a report, read from Redis with
the API's own store (``api.experiment_store``), so the figures are those of
``GET /v1/admin/experiments/{id}/report``. How they are computed: docs/experiments.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

#: SRM p-values below this are flagged (the assignment or exposure logging is broken).
SRM_ALPHA = 0.001


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``streamrec experiments list|report``."""
    # No action prints this help (exit 0), as `streamrec`, `topics` and `bench` do.
    parser.set_defaults(print_help=parser.print_help)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = sub.add_parser("list", help="every defined experiment")
    listing.add_argument("--json", action="store_true", help="print JSON")
    report = sub.add_parser("report", help="outcomes, lift and SRM of one experiment")
    report.add_argument("experiment_id", metavar="ID")
    report.add_argument("--json", action="store_true",
                        help="print the report as GET /v1/admin/experiments/{id}/report does")


def _with_store(use: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``use(store)`` against the configured Redis."""

    from api.experiment_store import ExperimentStore
    from core.redis_client import async_client
    from core.settings import get_settings

    settings = get_settings()

    async def run() -> Any:
        client = async_client(settings, decode_responses=True)
        try:
            return await use(ExperimentStore(client))
        finally:
            await client.aclose()

    return asyncio.run(run())


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f} %"


def _interval(estimate: dict[str, Any]) -> str:
    ci = estimate.get("ci95")
    if estimate.get("value") is None or not ci:
        return "–"
    verdict = "excludes 0" if ci[0] > 0 or ci[1] < 0 else "contains 0"
    return f"{_pct(estimate['value'])} [{_pct(ci[0])}, {_pct(ci[1])}] ({verdict})"


def format_report(report: dict[str, Any]) -> str:
    """The report as text: one line of counts per variant, then each lift with its
    interval, then the SRM verdict."""
    lines = [f"experiment {report['experiment_id']} ({report['status']}), control "
             f"{report['control']}"]
    header = ("variant", "entities", "impr.", "clicks", "carts", "purch.", "buyers",
              "revenue", "conv.", "rev/entity")
    rows = [header]
    for v in report["variants"]:
        conv = "–" if v["conversion"] is None else f"{100 * v['conversion']:.2f} %"
        rpe = "–" if v["revenue_per_entity"] is None else f"{v['revenue_per_entity']:.4f}"
        rows.append((v["name"], str(v["entities"]), str(v["impressions"]), str(v["clicks"]),
                     str(v["add_to_cart"]), str(v["purchases"]), str(v["purchasers"]),
                     f"{v['revenue']:.2f}", conv, rpe))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    for v in report["variants"]:
        if "lift" in v:
            lines.append(f"lift of {v['name']}: conversion {_interval(v['lift']['conversion'])}"
                         f"; revenue per entity "
                         f"{_interval(v['lift']['revenue_per_entity'])}")
    p = report["srm_p_value"]
    if p is None:
        lines.append("sample ratio: not testable yet")
    else:
        flag = "MISMATCH: the split is not the configured one" if p < SRM_ALPHA else "ok"
        lines.append(f"sample ratio: p = {p:.3g} ({flag})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """0 on success, 1 for an unknown experiment (said on stderr: stdout holds only the
    list or report, so ``--json`` output is JSON or nothing); no action prints the help."""
    if args.action is None:
        args.print_help()
        return 0
    if args.action == "list":
        docs = _with_store(lambda store: store.raw_all())
        if args.json:
            from api.experiment_store import public

            print(json.dumps([public(docs[i]).model_dump(mode="json") for i in sorted(docs)],
                             indent=2))
            return 0
        for experiment_id in sorted(docs):
            doc = docs[experiment_id]
            arms = ", ".join(f"{v['name']} {v['weight']:g} {v['serve']}"
                             for v in doc["variants"])
            contexts = ",".join(doc.get("contexts") or ["all"])
            print(f"{experiment_id}  {doc.get('status')}  contexts {contexts}  [{arms}]")
        return 0
    report = _with_store(lambda store: store.report(args.experiment_id))
    if report is None:
        print(f"streamrec experiments: no experiment {args.experiment_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
