"""Serving stage: the checked-in gunicorn configuration (`gunicorn -c serving/gunicorn_conf.py
recsys.serving.wsgi:app`; `recsys serve` runs exactly that). Every value can be overridden with an
environment variable, and --bind/--workers on gunicorn's command line win over this file.

Fork safety: the app is NOT preloaded in the master. FAISS (OpenMP) and torch start thread pools
on first use and those do not survive a fork (a forked child can hang on a lock a vanished thread
held), so each worker limits its native threads right after the fork (post_fork) and only then
loads the bundle (post_worker_init, before it accepts connections); /readyz answers 503 while no
bundle could be loaded (none published yet, or a broken one) and the worker keeps watching.

Workers agree through a server directory the master creates ($RECSYS_SERVER_DIR, see
serving/fleet.py): /admin/reload and /admin/rollback answer once every worker reports the change.
A config with [serving] poll_seconds = 0 and several workers is refused at start: a worker that
does not poll would miss a change made through its siblings.
"""

import os
import shutil
import tempfile
from pathlib import Path

from recsys.logs import quiet_progress_bars
from recsys.serving.logs import gunicorn_logconfig

quiet_progress_bars()  # workers inherit it: the server's output is a log, not a terminal

bind = os.environ.get("RECSYS_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("RECSYS_WORKERS", "2"))
worker_class = "gthread"  # threads share one model per worker: memory stays one copy per worker
threads = int(os.environ.get("RECSYS_THREADS", "4"))
# Native threads per worker for torch / FAISS / OpenMP (workers x threads already fill the cores).
native_threads = int(os.environ.get("RECSYS_NATIVE_THREADS", "1"))
preload_app = False  # load after fork (see above)
timeout = int(os.environ.get("RECSYS_TIMEOUT", "60"))  # a worker silent this long is restarted
graceful_timeout = 30  # in-flight requests finish on shutdown / reload
keepalive = 5
max_requests = 0  # no periodic recycling: a reload would cost a full bundle load
limit_request_line = 8190  # the largest gunicorn allows; the API's query limits are sized to fit
limit_request_field_size = 8190
accesslog = os.environ.get("RECSYS_ACCESS_LOG") or None  # "-" for stdout, or a file path
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("RECSYS_LOG_LEVEL", "info")
# gunicorn's own lines and the app's loggers (bundle swaps, errors) in one format on stderr,
# JSON lines when RECSYS_LOG_FORMAT=json; every line logged in a request carries its request_id.
logconfig_dict = gunicorn_logconfig(accesslog)
proc_name = "recsys-serve"
control_socket_disable = True  # one fixed socket path per user: several servers would collide
_created: list[str] = []


def on_starting(server):
    """Master, before any worker: refuse a config the workers cannot keep in agreement, then
    fresh directories for the workers' reports and their Prometheus metric files."""
    from recsys.config import ConfigError, load_config
    from recsys.serving import fleet

    try:
        config = load_config(os.environ.get("RECSYS_CONFIG") or None)
    except ConfigError as exc:
        raise RuntimeError(str(exc)) from None  # gunicorn prints "Error: ..." and exits 1
    if config.serving.poll_seconds <= 0 and server.cfg.workers > 1:
        raise RuntimeError(
            f"[serving] poll_seconds = 0 with {server.cfg.workers} workers: a worker that does "
            "not poll misses reloads and rollbacks made through its siblings; set poll_seconds "
            "> 0 (e.g. 1) or run one worker"
        )
    server_dir = tempfile.mkdtemp(prefix="recsys-server-")
    fleet.prepare(Path(server_dir))
    os.environ[fleet.SERVER_DIR_ENV] = server_dir
    _created.append(server_dir)
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="recsys-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        _created.append(path)  # ours: removed in on_exit
    else:
        shutil.rmtree(path, ignore_errors=True)  # stale files would add old totals
        os.makedirs(path, exist_ok=True)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(native_threads)
    server.log.info("prometheus multiprocess dir: %s", path)


def on_exit(server):
    """Master, shutting down: remove the directories on_starting created."""
    for path in _created:
        shutil.rmtree(path, ignore_errors=True)


def post_fork(server, worker):
    """Worker, right after the fork, before the app is imported: cap native thread pools; the
    errors gunicorn answers itself become JSON."""
    from recsys.serving import gunicorn_errors
    from recsys.serving.threads import limit_threads

    limit_threads(native_threads)
    gunicorn_errors.install()


def pre_request(worker, req):
    """A body the app refuses (413) is not read, and gunicorn drains at most 64 KiB of it before
    dropping the connection: say `Connection: close` for such requests (and chunked ones, whose
    size is unknown) so pooled clients do not reuse a connection about to close."""
    limit = worker.wsgi.config.get("MAX_CONTENT_LENGTH") or 0
    length = next((v for name, v in req.headers if name == "CONTENT-LENGTH"), None)
    chunked = any(name == "TRANSFER-ENCODING" for name, _ in req.headers)
    if chunked or (length is not None and length.isdigit() and int(length) > limit):
        req.force_close()


def post_worker_init(worker):
    """Worker, app imported, not accepting yet: load the bundle, then watch the pointers.

    Loading before the worker accepts means a (re)started worker never answers 503 while its
    siblings serve. The arbiter restarts a worker silent for `timeout` seconds, so a thread keeps
    the heartbeat going while the bundle loads.
    """
    import threading

    from recsys.serving.app import start_holder

    done = threading.Event()

    def heartbeat():
        while not done.wait(1.0):
            worker.notify()

    threading.Thread(target=heartbeat, name="load-heartbeat", daemon=True).start()
    try:
        start_holder(worker.wsgi, load_now=True, watch=True)  # no bundle yet: /readyz says 503
    finally:
        done.set()


def child_exit(server, worker):
    """Master: a worker is gone; its report is dropped (admin actions stop waiting for it) and
    its live gauges stop counting (counters keep their totals)."""
    # Imported here, never at the top: prometheus_client picks its storage when first imported,
    # and that must happen after on_starting has set PROMETHEUS_MULTIPROC_DIR.
    from prometheus_client import multiprocess

    from recsys.serving.fleet import Fleet

    Fleet.from_env().forget(worker.pid)
    multiprocess.mark_process_dead(worker.pid)
