"""A serving row filled from an old item hash reads its flags as the serve script reads
the hash (``flag`` in ``api/lua/serve_request.lua``: ASCII white space trimmed, the
words of ``core.limits.FLAG_TRUE`` / ``FLAG_FALSE``)."""

from __future__ import annotations

from stream.catalog_columns import _hash_row, serve_row


def test_a_filled_row_trims_flags_as_the_script_does() -> None:
    # category, price, deleted, updated_at, name, currency, in_stock
    assert _hash_row([None, "5.0", " YES\t", "1.0", "n", "EUR", " off "]) == serve_row(
        in_stock=False, deleted=True, price="5.0", currency="EUR", name="n")
    # a no-break space is no white space to Lua: the script serves "\xa0no" as in stock
    assert _hash_row([None, None, "\xa01", "1.0", "n", None, "\xa0no"]) == serve_row(
        in_stock=True, deleted=False, name="n")


def test_the_script_and_a_filled_row_read_the_same_words() -> None:
    """One definition (``core.limits``): the serve script's sets are rendered from it."""
    from api.serve_script import SERVE, SERVE_ONE
    from core.limits import FLAG_FALSE, FLAG_TRUE

    for script in (SERVE, SERVE_ONE):
        for lua_name, words in (("falsy", FLAG_FALSE), ("truthy", FLAG_TRUE)):
            line = next(t for t in script.splitlines() if t.startswith(f"local {lua_name} ="))
            assert sorted(line.split("'")[1::2]) == sorted(words)
    for word in FLAG_TRUE:
        assert _hash_row([None, None, word.upper(), None, None, None, None])[:2] == "11"
    for word in FLAG_FALSE:
        assert _hash_row([None, None, None, None, None, None, word])[:2] == "00"
