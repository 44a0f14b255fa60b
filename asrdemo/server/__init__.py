"""The web demo: `create_app()` is the WSGI app factory (`gunicorn 'asrdemo.server:create_app()'`)."""

from asrdemo.server.app import create_app

__all__ = ["create_app"]
