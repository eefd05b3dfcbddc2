// The page a person opens at GET /.ws on a websocket-echo listener (HTTP
// echo on): one self-contained HTML document, CSS and script inline, no
// external assets, so that it works behind any proxy and offline. It opens a
// WebSocket to the host and port it was loaded from (wss:// when the page came
// over https://), to the listener's websocket.path plus the page's own query
// (/.ws?delay=100ms connects with ?delay=100ms), sends what is typed and shows
// the echoes, the negotiated extensions and the close code.
//
// Element ids are an interface (tests/browser/drive.py drives them): #url
// (the WebSocket URL, editable), #connect, #close, #message, #send, #log (one
// line per event: "open", "sent: X", "echo: X", "close: CODE REASON", "error"),
// #status ("connecting", "open", "closed"), #close-code, #extensions ("none"
// when the server accepted none).
//
// Thread safety: a pure function; any thread.
#pragma once

#include <string>
#include <string_view>

namespace shoal {

// The page for a listener whose upgrade path is `ws_path`. The path goes into
// a JavaScript string inside a <script> element: everything but a few plain
// ASCII characters is written as a \u escape, so no path can end the string
// or the element.
std::string browser_page(std::string_view ws_path);

}  // namespace shoal
