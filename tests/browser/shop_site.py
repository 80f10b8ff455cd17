"""The shop the browser test visits: a small HTTP server on its own port (so on another
origin than the API) serving

* ``/``: ``sdk/js/examples/snippet.html``, the documented snippet byte for byte, with its
  placeholders (API address, keys) filled in and a heading and some style around it;
* ``/products/{item_id}``: a product page that loads the SDK from the API too, tracks a
  ``view``, has a "Buy" button (``purchase``, then ``flush``) and a "similar" list.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
SNIPPET_PAGE = ROOT / "sdk" / "js" / "examples" / "snippet.html"
STYLE = """<style>
body { font: 16px/1.4 "Liberation Sans", sans-serif; margin: 24px; color: #222; }
#streamrec-recs a, #similar a { display: inline-block; margin: 6px 10px 6px 0;
  padding: 14px; width: 180px; border: 1px solid #bbb; border-radius: 6px;
  text-decoration: none; color: #124; background: #f4f7fb; }
button { font-size: 16px; padding: 8px 16px; margin: 8px 0; }
</style>
"""


@dataclass(frozen=True)
class ShopConfig:
    """Where the API is, the keys the pages embed, and the catalog's names and prices."""

    api: str
    tracking_key: str
    read_key: str
    catalog: Mapping[str, Mapping[str, Any]]


def home_page(config: ShopConfig) -> str:
    """The snippet page with its placeholders filled in (the snippet itself unchanged)."""
    page = SNIPPET_PAGE.read_text()
    for placeholder, value in (("https://api.example.com", config.api),
                               ("YOUR_TRACKING_KEY", config.tracking_key),
                               ("YOUR_READ_KEY", config.read_key)):
        assert placeholder in page, placeholder
        page = page.replace(placeholder, value)
    page = page.replace("</head>", f"{STYLE}</head>", 1)
    return page.replace("<body>", "<body>\n<h1>streamrec test shop</h1>\n"
                                  "<p>Recommended for you:</p>", 1)


def product_page(config: ShopConfig, item_id: str) -> str:
    """A product page: view on load, purchase on "Buy", similar items observed."""
    item = config.catalog.get(item_id, {})
    name = html.escape(str(item.get("name", item_id)))
    price = float(item.get("price", 1.0))
    init = json.dumps({"endpoint": config.api, "trackingKey": config.tracking_key,
                       "readKey": config.read_key, "context": {"page": "product"}})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}</title>{STYLE}</head>
<body>
<h1>{name}</h1>
<p>{price:.2f} EUR</p>
<button id="buy" type="button">Buy</button> <a href="/">Back to the shop</a>
<h2>Similar</h2>
<div id="similar"></div>
<script src="{html.escape(config.api)}/sdk/streamrec.js"></script>
<script>
  var sr = StreamRec.init({init});
  var itemId = {json.dumps(item_id)};
  sr.track("view", {{ item_id: itemId }});
  document.getElementById("buy").addEventListener("click", function () {{
    sr.track("purchase", {{ item_id: itemId, quantity: 1, price: {price} }});
    sr.flush().then(function () {{ document.body.dataset.bought = "1"; }});
  }});
  sr.similar(itemId, {{ n: 4 }}).then(function (list) {{
    var box = document.getElementById("similar");
    list.items.forEach(function (item) {{
      var link = document.createElement("a");
      link.href = "/products/" + encodeURIComponent(item.item_id);
      link.setAttribute("data-item-id", item.item_id);
      link.textContent = item.name || item.item_id;
      box.appendChild(link);
    }});
    sr.observe(box, list);
  }});
</script>
</body></html>
"""


@contextmanager
def serve_shop(config: ShopConfig, port: int) -> Iterator[str]:
    """Serve the shop on 127.0.0.1:``port`` while the block runs; yields its origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, home_page(config))
            elif path.startswith("/products/"):
                self._send(200, product_page(config, unquote(path[len("/products/"):])))
            else:
                self._send(404 if path != "/favicon.ico" else 204, "")

        def _send(self, status: int, text: str) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="shop", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
