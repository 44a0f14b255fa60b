"""gunicorn settings for the web demo (the Dockerfile's CMD runs exactly this):

    gunicorn --config gunicorn.conf.py 'asrdemo.server:create_app()'

Workers, threads and the port come from the environment through `DemoSettings` (ASRDEMO_WORKERS,
ASRDEMO_THREADS, PORT; see asrdemo/server/settings.py). Each worker imports the app and loads
the model once, itself: no preloading, since torch's thread pools do not survive a fork.
Command-line flags and GUNICORN_CMD_ARGS still override anything here (the tests bind 127.0.0.1 so).
"""

import logging
import os

from asrdemo.server.settings import DemoSettings

_settings = DemoSettings.from_env()

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
preload_app = False
timeout = 120  # seconds a worker may spend on one request (a long clip on a slow CPU)
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"
# The heartbeat file goes to memory where there is one, and no control socket is made under
# $HOME (gunicorn >= 25), so that the server writes nothing to disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
control_socket_disable = True

# The app's own log lines (model loading, errors) go to stderr beside gunicorn's.
logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] [asrdemo] %(levelname)s %(message)s")
