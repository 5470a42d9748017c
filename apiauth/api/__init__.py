"""The JSON API under /api/v1, for services holding a service token of a domain."""

from flask import request

URL_PREFIX = "/api/v1"


def is_api_request():
    """Tell whether the request is addressed to the JSON API."""
    return request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/")
