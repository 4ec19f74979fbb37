"""[compute]: where a job runs is no part of what it computes — the run key and every config hash
are the same for backend "local" and "ray"; the command line's --compute / --ray-address."""

import subprocess
import sys

from support import REPO, SAMPLE

from recsys.config import config_hash, load_config
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
