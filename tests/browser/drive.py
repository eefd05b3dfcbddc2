#!/usr/bin/python3
"""Loads shoald's browser page (GET /.ws) in a real headless Chromium and checks it.

Run by tests/browser_test.cpp with /usr/bin/python3 (Debian's interpreter,
which sees python3-websockets). Starts Debian's `chromium` headless with a
throwaway profile, finds its DevTools WebSocket from the "DevTools listening
on ws://..." line of its stderr and drives it over the Chrome DevTools
Protocol: opens URL, waits for the page's WebSocket to open, types a message
into #message, clicks #send, waits for the echo in #log, reads #extensions,
clicks #close and checks #close-code, and writes a screenshot. The page's
element ids are its interface (server/protocol/browser_page.hpp).

Every wait is bounded; Chromium (its whole process group) is killed at the
end whatever happened. Prints one "ok ..." line per check, what the page
showed, and "ALL OK"; exits 1 with a "FAIL ..." line on the first failed
check, 2 when Chromium could not be started or driven.

usage: drive.py URL EXPECTED_EXTENSIONS|none SCREENSHOT.png
  EXPECTED_EXTENSIONS: a substring #extensions must contain (for example
  permessage-deflate); "none": the server must have accepted no extension.
Environment: CHROMIUM, the browser to run (default: chromium on PATH).
"""

import asyncio
import base64
import json
import os
import shutil
import signal
import sys
import tempfile

import websockets

STARTUP_TIMEOUT = 60.0  # Chromium's first start on a small machine is slow
STEP_TIMEOUT = 20.0
TOTAL_TIMEOUT = 100.0  # under browser_test.cpp's timeout(1) and ctest's 120s
MESSAGE = "hello from chromium, échø ✓"


class Failure(Exception):
    pass


class Broken(Exception):
    """Chromium or the protocol failed, not the page."""


def check(cond, what, seen=None):
    if not cond:
        raise Failure(what + ("" if seen is None else " (saw %r)" % (seen,)))
    print("ok", what, flush=True)


class Cdp:
    """One DevTools connection: commands matched to their answers by id,
    page exceptions collected from Runtime.exceptionThrown."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending = {}
        self.exceptions = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                fut = self.pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif msg.get("method") == "Runtime.exceptionThrown":
                    d = msg["params"]["exceptionDetails"]
                    self.exceptions.append(d.get("exception", {}).get("description") or d.get("text"))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(Broken("DevTools connection closed"))

    async def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps(msg))
        try:
            answer = await asyncio.wait_for(fut, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Broken("no answer to %s within %ss" % (method, STEP_TIMEOUT))
        if "error" in answer:
            raise Broken("%s: %s" % (method, answer["error"]))
        return answer["result"]


class Page:
    def __init__(self, cdp, session):
        self.cdp = cdp
        self.session = session

    async def send(self, method, params=None):
        return await self.cdp.send(method, params, self.session)

    async def eval(self, expression):
        r = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise Failure("page script failed: %s: %s" % (
                expression, d.get("exception", {}).get("description") or d.get("text")))
        return r["result"].get("value")

    async def text(self, element_id):
        return await self.eval("(document.getElementById(%s) || {textContent: null}).textContent"
                               % json.dumps(element_id))

    async def screenshot(self, path):
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        data = base64.b64decode(shot["data"])
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return data

    async def log_lines(self):
        return await self.eval(
            "Array.from(document.querySelectorAll('#log li'), li => li.textContent)")

    async def wait_for(self, what, expression, timeout=STEP_TIMEOUT):
        """Polls a page expression until it is truthy; the page's state when it is not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if await self.eval(expression):
                return
            if loop.time() >= deadline:
                raise Failure("%s within %ss (status %r, log %r)" % (
                    what, timeout, await self.text("status"), await self.log_lines()))
            await asyncio.sleep(0.05)


async def start_chromium(profile):
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not binary:
        raise Broken("no chromium on PATH (deploy/install-deps.sh installs Debian's chromium)")
    args = [binary, "--headless=new", "--no-sandbox", "--remote-debugging-port=0",
            "--user-data-dir=" + profile, "--ignore-certificate-errors",
            # Nothing but the page under test: no proxy from the environment,
            # no first-run work, no calls home.
            "--no-proxy-server", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--disable-dev-shm-usage", "--mute-audio",
            "--window-size=960,720", "about:blank"]
    # Its own process group: the launcher script, the browser, its zygote,
    # renderers and GPU process go together at the end.
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    return proc


async def devtools_url(proc, stderr_lines):
    prefix = "DevTools listening on "
    while True:
        line = await proc.stderr.readline()
        if not line:
            raise Broken("chromium exited (code %s) before DevTools listened:\n%s"
                         % (await proc.wait(), "".join(stderr_lines[-20:])))
        text = line.decode(errors="replace")
        stderr_lines.append(text)
        if text.startswith(prefix):
            return text[len(prefix):].strip()


async def drain(stream, lines):
    # Chromium keeps writing to stderr; a full pipe would stall it.
    while True:
        line = await stream.readline()
        if not line:
            return
        lines.append(line.decode(errors="replace"))
        del lines[:-200]


async def run_checks(page, url, expected_extensions, screenshot):
    """What a person does with the page, and what they should see."""
    nav = await page.send("Page.navigate", {"url": url})
    check("errorText" not in nav, "page loaded from " + url, nav.get("errorText"))
    await page.wait_for("the page loads", "document.readyState === 'complete'")
    served = await page.eval(
        "[performance.getEntriesByType('navigation')[0].responseStatus, document.contentType,"
        " document.characterSet, document.title]")
    check(served[:3] == [200, "text/html", "UTF-8"], "the page came as 200 text/html in UTF-8", served)
    refs = await page.eval(
        "Array.from(document.querySelectorAll('[src], [href]'), e => e.getAttribute('src') ||"
        " e.getAttribute('href')).filter(u => !u.startsWith('data:'))")
    check(refs == [], "the page loads nothing from elsewhere", refs)
    print("websocket url:", await page.eval("document.getElementById('url').value"), flush=True)

    await page.wait_for("#status reads \"open\"",
                        "document.getElementById('status').textContent !== 'connecting'")
    status = await page.text("status")
    check(status == "open", "#status is open", (status, await page.log_lines()))

    await page.eval(
        "(() => { const m = document.getElementById('message'); m.value = %s;"
        " m.dispatchEvent(new Event('input', {bubbles: true}));"
        " document.getElementById('send').click(); })()" % json.dumps(MESSAGE))
    await page.wait_for("the echo in #log",
                        "Array.from(document.querySelectorAll('#log li'),"
                        " li => li.textContent).includes(%s)" % json.dumps("echo: " + MESSAGE))
    lines = await page.log_lines()
    sent, echo = "sent: " + MESSAGE, "echo: " + MESSAGE
    check(sent in lines and lines.index(sent) < lines.index(echo),
          "#log shows the message sent, then its echo", lines)
    # The log's own times (ms since Connect): a ?delay= in the page's query
    # shows here.
    times = await page.eval(
        "Array.from(document.querySelectorAll('#log li'), li => parseInt(li.dataset.t, 10))")
    print("echo after %d ms" % (times[lines.index(echo)] - times[lines.index(sent)]), flush=True)

    extensions = await page.text("extensions")
    print("extensions:", repr(extensions), flush=True)
    if expected_extensions == "none":
        check(extensions == "none", "no extension accepted", extensions)
    else:
        check(expected_extensions in extensions,
              "#extensions has " + expected_extensions, extensions)

    await page.eval("document.getElementById('close').click()")
    await page.wait_for("#status reads \"closed\"",
                        "document.getElementById('status').textContent === 'closed'")
    close_code = await page.text("close-code")
    check(close_code == "1000", "#close-code is 1000", close_code)
    lines = await page.log_lines()
    check(lines and lines[-1].startswith("close: 1000"), "#log ends with the close", lines)
    print("log:", json.dumps(lines, ensure_ascii=False), flush=True)

    data = await page.screenshot(screenshot)
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "screenshot written to %s (%d bytes)"
          % (screenshot, len(data)))


async def drive(url, expected_extensions, screenshot, proc, stderr_lines):
    ws_url = await asyncio.wait_for(devtools_url(proc, stderr_lines), STARTUP_TIMEOUT)
    print("chromium DevTools at", ws_url, flush=True)
    drainer = asyncio.ensure_future(drain(proc.stderr, stderr_lines))
    async with websockets.connect(ws_url, max_size=None, ping_interval=None,
                                  open_timeout=STEP_TIMEOUT, close_timeout=2) as ws:
        cdp = Cdp(ws)
        target = await cdp.send("Target.createTarget", {"url": "about:blank"})
        attached = await cdp.send("Target.attachToTarget",
                                  {"targetId": target["targetId"], "flatten": True})
        page = Page(cdp, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        try:
            await run_checks(page, url, expected_extensions, screenshot)
        except Failure:
            # What the page looked like when it failed, for whoever reads
            # the test's output.
            try:
                await page.screenshot(screenshot)
                print("screenshot of the failure in", screenshot, flush=True)
            except (Broken, Failure, OSError):
                pass
            raise
        check(not cdp.exceptions, "no uncaught exception in the page", cdp.exceptions)
        try:
            await asyncio.wait_for(cdp.send("Browser.close"), 5)
        except (Broken, asyncio.TimeoutError, websockets.ConnectionClosed):
            pass  # killed below anyway
    drainer.cancel()


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, expected_extensions, screenshot = argv[1:]
    profile = tempfile.mkdtemp(prefix="shoal-chromium-")
    stderr_lines = []
    proc = None
    try:
        proc = await start_chromium(profile)
        await asyncio.wait_for(drive(url, expected_extensions, screenshot, proc, stderr_lines),
                               TOTAL_TIMEOUT)
        print("ALL OK", flush=True)
        return 0
    except Failure as e:
        print("FAIL", e, flush=True)
        return 1
    except asyncio.TimeoutError:
        print("FAIL the whole run took over %ss" % TOTAL_TIMEOUT, flush=True)
        return 1
    except (Broken, OSError, websockets.WebSocketException) as e:
        print("BROKEN", e, flush=True)
        if stderr_lines:
            print("chromium's last stderr lines:\n" + "".join(stderr_lines[-20:]), flush=True)
        return 2
    finally:
        if proc is not None:
            kill_group(proc)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                print("chromium did not exit after SIGKILL", flush=True)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
