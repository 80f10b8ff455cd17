"""A serving row filled from an old item hash reads its flags as the serve script reads
the hash (``flag`` in ``api/lua/serve_request.lua``: ASCII white space trimmed)."""

from __future__ import annotations

from stream.catalog_columns import _hash_row, serve_row


def test_a_filled_row_trims_flags_as_the_script_does() -> None:
    # category, price, deleted, updated_at, name, currency, in_stock
    assert _hash_row([None, "5.0", " YES\t", "1.0", "n", "EUR", " off "]) == serve_row(
        in_stock=False, deleted=True, price="5.0", currency="EUR", name="n")
    # a no-break space is no white space to Lua: the script serves "\xa0no" as in stock
    assert _hash_row([None, None, "\xa01", "1.0", "n", None, "\xa0no"]) == serve_row(
        in_stock=True, deleted=False, name="n")
