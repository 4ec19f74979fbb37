"""[compute]: where a job runs is no part of what it computes — the run key and every config hash
are the same for backend "local" and "ray"; nor are the keys only the API reads; the command
line's --compute / --ray-address."""

import subprocess
import sys

from support import REPO, SAMPLE

from recsys.config import SERVE_ONLY_KEYS, PipelineConfig, config_hash, load_config
from recsys.pipeline.fingerprint import run_key


def test_run_key_and_config_hash_do_not_depend_on_where_the_job_runs():
    local = load_config()
    on_ray = load_config(None, {"compute": {"backend": "ray", "address": "auto", "workers": 8}})
    assert on_ray.compute.backend == "ray" and local.compute.backend == "local"
    assert config_hash(on_ray) == config_hash(local)
    assert run_key("abc", on_ray) == run_key("abc", local)
    # ...while what the job computes still changes both
    other = load_config(None, {"collab": {"factors": 8}})
    assert run_key("abc", other) != run_key("abc", local)


SERVE_ONLY_VALUES = {
    "serving": {
        "max_k": 50,
        "default_k": 5,
        "max_body_bytes": 4096,
        "poll_seconds": 3.0,
        "switch_timeout_seconds": 9.0,
        "variants": {"challenger": 0.1},
        "salt": "other",
        "exposure_log": "/tmp/exposure.jsonl",
    },
    "live": {
        "store": "redis://localhost:6379/0",
        "redis_prefix": "x:",
        "token_env": "OTHER_TOKEN",
        "max_text_chars": 100,
        "max_events": 5,
        "poll_seconds": 2.0,
        "unknown_items": "refuse",
        "rerank_on_events": True,
        "rerank_cache": 7,
    },
}


def test_keys_only_the_api_reads_leave_the_run_key_alone():
    base = load_config()
    listed = {(s, k) for s, keys in SERVE_ONLY_KEYS.items() for k in keys}
    assert listed == {(s, k) for s, values in SERVE_ONLY_VALUES.items() for k in values}
    for section, keys in SERVE_ONLY_KEYS.items():  # every listed key exists (a rename fails here)
        fields = type(getattr(base, section)).model_fields
        assert keys <= set(fields), keys - set(fields)
    for section, values in SERVE_ONLY_VALUES.items():
        for key, value in values.items():
            changed = load_config(None, {section: {key: value}})
            assert getattr(getattr(changed, section), key) == value
            assert run_key("abc", changed) == run_key("abc", base), (section, key)
    # what the nightly reads of [serving] still changes the run: the published top-K
    deeper = load_config(None, {"serving": {"precomputed_k": 50}})
    assert run_key("abc", deeper) != run_key("abc", base)
    assert set(SERVE_ONLY_KEYS) <= set(PipelineConfig.model_fields)


def test_ray_address_without_the_ray_backend_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recsys.jobs.cli", "nightly", "--data", str(SAMPLE), "--no-tracking"]
        + ["--workdir", str(tmp_path), "--ray-address", "auto"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert "--ray-address auto: expected --compute ray" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran
