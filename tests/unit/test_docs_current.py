"""Docs that state today's numbers and names: a constant the docs name goes with its current
value, and every key the browser SDK writes to the shopper's device is listed where its
stored data is documented; docs say what is, not what was (history goes to CHANGELOG.md).
Each failure here is a doc describing older code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from core.kafka_tools import CACHED_KEY_BYTES
from core.limits import MAX_MESSAGE_BYTES
from recommender.batch_step import REHANDOVER_S
from stream.applied import REBUILD_LOCK_TTL_S, keep_rebuild_lock
from streamrec.sim.simulate import MAX_DURATION_S, MAX_RATE, MAX_SHOP

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: (a name the docs write, the words every doc naming it must use for its value, the
#: constant, the value those words state). A changed constant fails here until the docs
#: that name it say the new value (and this table is updated with them).
NAMED = [
    ("REHANDOVER_S", "within a day", REHANDOVER_S, 86_400),
    ("MAX_MESSAGE_BYTES", "512 KB", MAX_MESSAGE_BYTES, 512 * 1024),
    ("REBUILD_LOCK_TTL_S", "120 s", REBUILD_LOCK_TTL_S, 120),
    ("REBUILD_LOCK_TTL_S", "every 30 s",
     inspect.signature(keep_rebuild_lock).parameters["every_s"].default, 30),
    ("CACHED_KEY_BYTES", "64 bytes", CACHED_KEY_BYTES, 64),
]


def test_docs_state_the_current_value_of_each_constant_they_name() -> None:
    """Each doc that names one of ``NAMED``'s constants states its current value."""
    wrong = [f"{name} is {value}, not {stated}" for name, _, value, stated in NAMED
             if value != stated]
    for doc in DOCS:
        text = " ".join(doc.read_text().split())
        wrong += [f"{doc.relative_to(ROOT)} names {name} without {words!r}"
                  for name, words, _, _ in NAMED if name in text and words not in text]
    assert not wrong, wrong


def test_readme_states_the_simulate_and_demo_bounds() -> None:
    """README's CLI section states the bounds `simulate` and `demo` apply to their options."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (MAX_SHOP, MAX_RATE, MAX_DURATION_S) == (100_000, 1_000_000, 7 * 86_400)
    for words in ("at most 100,000 users and items", "1,000,000 events/s", "a week of traffic"):
        assert words in readme, words


def test_sdk_storage_section_lists_every_key_the_sdk_writes() -> None:
    """Every `localStorage`/cookie key the browser SDK's sources write (``${prefix}_NAME``
    with the default prefix ``streamrec``, or a fixed ``"streamrec_NAME"``) is named in
    the SDK README's "Storage and privacy" section and ``storagePrefix`` row."""
    src = "\n".join(p.read_text() for p in (ROOT / "sdk" / "js" / "src").glob("*.ts"))
    names = set(re.findall(r"\$\{prefix\}_(\w+)", src))
    fixed = set(re.findall(r"""["'`]streamrec_(\w+)["'`]""", src))
    assert {"aid", "uid", "queue", "tabs"} <= names, names
    readme = (ROOT / "sdk" / "js" / "README.md").read_text()
    storage = readme.split("### Storage and privacy", 1)[1].split("\n## ", 1)[0]
    prefix_row = next(line for line in readme.splitlines()
                      if line.startswith("| `storagePrefix`"))
    missing = [f"streamrec_{n}" for n in sorted(names | fixed) if f"`streamrec_{n}`" not in storage]
    missing += [f"_{n} (storagePrefix row)" for n in sorted(names) if f"`_{n}`" not in prefix_row]
    assert not missing, f"the SDK README's storage docs lack {missing}"


#: Words of a diary: what the code used to do, or did until a date. Reference docs state
#: what is; the story of a change goes to CHANGELOG.md.
DIARY = re.compile(r"\bused to\b(?! (?:compute|build|make|read|send|serve|run|check))|"
                   r"\buntil 20\d\d-\d\d-\d\d", re.IGNORECASE)


def test_docs_are_reference_not_diaries() -> None:
    """README, docs/*.md and the SDK README narrate no history ("used to", "until
    2026-12-03"): such sentences survived the change they describe and misled readers
    about today's behaviour."""
    found = []
    for doc in [*DOCS, ROOT / "sdk" / "js" / "README.md"]:
        text = " ".join(doc.read_text().split())
        found += [f"{doc.relative_to(ROOT)}: ...{text[max(0, m.start() - 60):m.end() + 20]}..."
                  for m in DIARY.finditer(text)]
    assert not found, found
