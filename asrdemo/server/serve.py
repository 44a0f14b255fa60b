"""`asrdemo serve`: the demo on Flask's development server (for production use gunicorn, see docs/demo.md).

    asrdemo serve [--exp_dir exp_train_large] [--host 127.0.0.1] [--port $PORT]
"""

import logging

from asrdemo.server.settings import DemoSettings

log = logging.getLogger(__name__)


def add_arguments(p):
    p.add_argument("--exp_dir", default=None, help="packaged exp dir to load (default: $ASRDEMO_EXP or exp_train_large)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to expose it)")
    p.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    p.add_argument("--debug", action="store_true", help="Flask debug mode (reloader, tracebacks in the browser)")


def main(args):
    from asrdemo.server.app import create_app

    settings = DemoSettings.from_env(exp_dir=args.exp_dir, port=args.port)
    app = create_app(settings=settings)
    log.info("serving %s on http://%s:%d/ (development server; use gunicorn in production)",
             settings.exp_dir, args.host, settings.port)
    app.run(host=args.host, port=settings.port, debug=args.debug, threaded=True)
