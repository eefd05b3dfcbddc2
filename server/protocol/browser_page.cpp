#include "protocol/browser_page.hpp"

#include <cstdint>

#include "protocol/utf8.hpp"

namespace shoal {

namespace {

// The page up to the opening quote of WS_PATH, and from its closing quote
// on. Plain script, no framework and no build step: it is read by people
// curious about what a proxy did to their WebSocket, and must keep working
// with no network beyond this one listener. The empty data: icon keeps the
// browser from asking for /favicon.ico, which HTTP echo would answer and
// count.
constexpr std::string_view kHead = R"page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shoal: WebSocket echo</title>
<link rel="icon" href="data:,">
<style>
:root { color-scheme: light dark; --fg: #1d232a; --muted: #66717d; --bg: #f5f6f8; --card: #fff;
  --line: #d7dce2; --accent: #0b63c1; --ok: #1a7f37; --bad: #c62828; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e5e8ec; --muted: #98a2ad; --bg: #13171b; --card: #1c2127; --line: #313840;
    --accent: #5aa9ff; --ok: #5cc672; --bad: #ff6b6b; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.45 system-ui, sans-serif; }
main { max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
.hint { color: var(--muted); margin: 0 0 1rem; }
code, input, dd, #log { font-family: ui-monospace, monospace; font-size: .9rem; }
code { white-space: nowrap; }
form { display: flex; gap: .5rem; margin: 0 0 .75rem; }
input { flex: 1; min-width: 0; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); color: var(--fg); }
button { padding: .45rem .9rem; border: 1px solid var(--accent); border-radius: 6px; background: var(--accent);
  color: #fff; font: inherit; cursor: pointer; }
button.plain { background: transparent; color: var(--accent); }
button:disabled { opacity: .45; cursor: default; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0 0 .75rem;
  padding: .6rem .8rem; background: var(--card); border: 1px solid var(--line); border-radius: 6px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
#status[data-state=open] { color: var(--ok); }
#status[data-state=closed] { color: var(--bad); }
#log { list-style: none; margin: 0; padding: .5rem .8rem; min-height: 10rem; max-height: 24rem; overflow: auto;
  background: var(--card); border: 1px solid var(--line); border-radius: 6px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
#log li::before { content: attr(data-t); display: inline-block; min-width: 6em; color: var(--muted); }
#log .sent { color: var(--accent); }
#log .echo { color: var(--ok); }
#log .close, #log .error { color: var(--bad); }
</style>
</head>
<body>
<main>
<h1>shoal WebSocket echo</h1>
<p class="hint">Response controls go in the URL's query, for example <code>?delay=100ms</code>,
<code>?size=64</code> or <code>?close_after=3&amp;close_code=4000</code>. Times in the log count from Connect.</p>
<form id="connect-form">
<input id="url" aria-label="WebSocket URL" spellcheck="false" autocomplete="off">
<button id="connect">Connect</button>
<button id="close" type="button" class="plain">Close</button>
</form>
<dl>
<dt>Status</dt><dd id="status">connecting</dd>
<dt>Extensions</dt><dd id="extensions"></dd>
<dt>Close code</dt><dd id="close-code"></dd>
</dl>
<form id="send-form">
<input id="message" aria-label="Message" value="hello" autocomplete="off">
<button id="send">Send</button>
</form>
<ol id="log" aria-live="polite"></ol>
</main>
<script>
"use strict";
const WS_PATH = ")page";

constexpr std::string_view kTail = R"page(";
const $ = (id) => document.getElementById(id);
let ws = null;
let started = 0;

function log(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.dataset.t = Math.round(performance.now() - started) + " ms";
  li.textContent = text;
  const list = $("log");
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function show(state) {
  $("status").textContent = state;
  $("status").dataset.state = state;
  $("send").disabled = state !== "open";
  $("close").disabled = state !== "open";
}

function connect() {
  if (ws) {
    // A socket replaced by Connect says nothing more: its events would
    // overwrite the new one's status.
    const old = ws;
    old.onopen = old.onmessage = old.onerror = old.onclose = null;
    old.close(1000);
  }
  $("extensions").textContent = "";
  $("close-code").textContent = "";
  show("connecting");
  started = performance.now();
  try {
    ws = new WebSocket($("url").value);
  } catch (e) {
    ws = null;
    log("error", "error: " + e.message);
    show("closed");
    return;
  }
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    show("open");
    $("extensions").textContent = ws.extensions || "none";
    log("open", "open");
  };
  ws.onmessage = (e) => {
    const text = typeof e.data === "string" ? e.data : "(" + e.data.byteLength + " bytes, binary)";
    log("echo", "echo: " + text);
  };
  ws.onerror = () => log("error", "error");
  ws.onclose = (e) => {
    ws = null;
    show("closed");
    $("close-code").textContent = String(e.code);
    log("close", ("close: " + e.code + " " + e.reason).trimEnd());
  };
}

$("connect-form").onsubmit = (e) => {
  e.preventDefault();
  connect();
};
$("send-form").onsubmit = (e) => {
  e.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const text = $("message").value;
  log("sent", "sent: " + text);
  ws.send(text);
  $("message").select();
};
$("close").onclick = () => {
  if (ws) ws.close(1000, "closed by the page");
};

// Same host and port as the page, wss: when the page came over https:; its query
// (/.ws?delay=100ms) becomes the upgrade's, where the response controls are.
$("url").value = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + WS_PATH +
  location.search;
connect();
</script>
</body>
</html>
)page";

void append_u_escape(std::string& out, std::uint32_t unit) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(unit >> shift) & 0xF];
}

// Path characters that are safe anywhere in a JavaScript string in a
// <script> element. Everything else (quotes, backslash, '<' of "</script",
// '&', control characters, U+2028) becomes a \u escape.
bool plain(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
         c == '-' || c == '_' || c == '.' || c == '~';
}

void append_js_string_body(std::string& out, std::string_view s) {
  // Config paths are UTF-8 already (config.cpp); anything else is not a
  // path the browser could send, so its non-ASCII bytes show as U+FFFD.
  const bool utf8 = check_utf8(s) == Utf8::valid;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (plain(c)) {
        out += static_cast<char>(c);
      } else {
        append_u_escape(out, c);
      }
      ++i;
      continue;
    }
    if (!utf8) {
      append_u_escape(out, 0xFFFD);
      ++i;
      continue;
    }
    const std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    std::uint32_t cp = c & (0x7Fu >> len);
    for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
    i += len;
    if (cp > 0xFFFF) {
      cp -= 0x10000;
      append_u_escape(out, 0xD800 + (cp >> 10));
      append_u_escape(out, 0xDC00 + (cp & 0x3FF));
    } else {
      append_u_escape(out, cp);
    }
  }
}

}  // namespace

std::string browser_page(std::string_view ws_path) {
  std::string page;
  page.reserve(kHead.size() + kTail.size() + ws_path.size() * 6);
  page += kHead;
  append_js_string_body(page, ws_path);
  page += kTail;
  return page;
}

}  // namespace shoal
