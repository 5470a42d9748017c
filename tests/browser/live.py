"""The app on a real port and Debian's Chromium: shared by the browser tests and scripts/screenshots.py."""

import contextlib
import threading

from playwright.sync_api import sync_playwright
from werkzeug.serving import WSGIRequestHandler, make_server

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches Chromium keeps calling hosts that this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}


class QuietRequestHandler(WSGIRequestHandler):
    """Log errors, not every request."""

    def log_request(self, code="-", size="-"):
        pass


@contextlib.contextmanager
def serve(app):
    """Serve the app from a background thread on 127.0.0.1 at a free port; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    # A short poll interval makes shutdown quick; the default half second adds up over a suite.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextlib.contextmanager
def chromium():
    """Launch Debian's Chromium headless through Playwright; yield the browser."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, base_url):
    """Open a page in a fresh context (own cookies) whose relative URLs resolve against base_url."""
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
    context.set_default_timeout(5_000)
    return context.new_page()


def sign_in(page, username, password):
    """Sign in through the sign-in form, as a person would, and wait for the pane."""
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/authenticators")
    return page
