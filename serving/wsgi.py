"""Serving stage: the WSGI entry point gunicorn imports in each worker (`recsys.serving.wsgi:app`).

Creating the app loads no model: the bundle holder starts in the worker (post_worker_init in
serving/gunicorn_conf.py, or lazily on the first request), after the fork.
"""

from recsys.serving.app import create_app_from_env

app = create_app_from_env()
