"""What the browser tests look for and check on apiauth's pages."""


def mark_page(page):
    """Put a marker on window that only a full page load would wipe, and count refresh events."""
    page.evaluate(
        """() => {
            window.stillTheSamePage = true;
            window.refreshEvents = 0;
            document.body.addEventListener("apiauth:refresh", () => { window.refreshEvents += 1; });
        }"""
    )


def assert_not_reloaded(page):
    assert page.evaluate("window.stillTheSamePage === true"), "the page was reloaded"


def row_of(page, name):
    """The pane's row of the authenticator with this name."""
    return page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name, exact=True))


def status_cell(page, authenticator):
    """The Status cell of an authenticator's row, wherever htmx has swapped it."""
    return page.locator(f"#status-{authenticator.id}")
