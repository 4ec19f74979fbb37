"""/metrics: Prometheus text format, latency per route and variant, merged over worker processes."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_latency_histograms_by_route_and_status_counts(make_app):
    client = make_app().test_client()
    for _ in range(3):
        client.get("/healthz")
    client.get("/v1/users/u1/recommendations?k=0")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = _samples(response.get_data(as_text=True))
    health = (("route", "/healthz"), ("variant", "none"))
    assert samples[("recsys_http_request_duration_seconds_count", health)] == 3
    user_route = "/v1/users/<user_id>/recommendations"
    key = (("route", user_route), ("status", "422"), ("variant", "none"))
    assert samples[("recsys_http_requests_total", key)] == 1


MULTIPROCESS_WORKER = """
import sys
from recsys.serving.metrics import Metrics
m = Metrics()
m.requests.labels(route="/x", variant="A", status="200").inc(int(sys.argv[1]))
m.serving("A", sys.argv[2], None)
"""

MULTIPROCESS_READER = """
from recsys.serving.metrics import Metrics
print(Metrics().exposition()[0].decode())
"""


def _run(code: str, env: dict, *args: str) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return proc.pid, out.decode()


def test_counters_sum_over_processes_in_multiprocess_mode(tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first, _ = _run(MULTIPROCESS_WORKER, env, "3", "v1")  # two "workers", two processes
    _run(MULTIPROCESS_WORKER, env, "4", "v2")
    samples = _samples(_run(MULTIPROCESS_READER, env)[1])
    key = (("route", "/x"), ("status", "200"), ("variant", "A"))
    assert samples[("recsys_http_requests_total", key)] == 7
    info = {k[1]: v for k, v in samples.items() if k[0] == "recsys_bundle_info"}
    assert info == {
        (("variant", "A"), ("version", "v1")): 1,
        (("variant", "A"), ("version", "v2")): 1,
    }
    # gunicorn's child_exit marks a finished worker dead: its gauges go, its counters stay
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(first, str(tmp_path))
    samples = _samples(_run(MULTIPROCESS_READER, env)[1])
    assert samples[("recsys_http_requests_total", key)] == 7
    info = {k[1]: v for k, v in samples.items() if k[0] == "recsys_bundle_info"}
    assert info == {(("variant", "A"), ("version", "v2")): 1}
