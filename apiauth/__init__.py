"""apiauth: one place per domain for the credentials of third-party API calls.

Importing the package loads no Flask: `apiauth.client` and `apiauth.engine` serve
consumers in other processes. The app and the in-process helpers load on first use.
"""


def create_app(config=None):
    """Create the Flask app (see apiauth.app.create_app)."""
    from .app import create_app as create

    return create(config)


def use(domain, name, consumer="in-process", **options):
    """Return `auth=` for requests and httpx that uses an authenticator in this process (see apiauth.inprocess)."""
    from .inprocess import use as use_in_process

    return use_in_process(domain, name, consumer, **options)
