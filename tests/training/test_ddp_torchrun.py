"""`torchrun --nproc_per_node 2 -m recsys.jobs.train_ddp` (gloo, the tiny random BERT): two ranks
train the encoder from a data directory and leave a loadable encoder directory with the files
the nightly's encoder step writes; rank 0's bad input stops both ranks with a clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from subprocess import PIPE

import numpy as np
import pytest
from support import REPO, fast_config, small_sample, write_config

from recsys.encoder.model import TwoTowerEncoder

pytestmark = pytest.mark.slow


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--standalone", "-m", "recsys.jobs.train_ddp", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, stdout=PIPE, stderr=PIPE, text=True, cwd=REPO, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks: a hang fails, not lingers
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def test_torchrun_two_ranks_train_a_loadable_encoder(tiny_bert_dir, tmp_path):
    data = small_sample(tmp_path / "data", seed=1, n_users=120, n_items=150)
    config = write_config(tmp_path / "c.toml", fast_config(tiny_bert_dir))
    workdir = tmp_path / "work"
    args = ["--data", str(data), "--config", str(config), "--workdir", str(workdir), "-q"]
    proc = _torchrun(*args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # rank 0 alone reports
    assert result["world"] == 2 and len(result["history"]) == 2
    out = workdir / "encoders" / os.path.basename(result["encoder_dir"])
    # what the local loop writes (+ the nightly's marker): no checkpoint, no prepared inputs
    assert sorted(p.name for p in out.iterdir()) == [
        "encoder.json",
        "towers.safetensors",
        "trained.json",
    ]
    assert not (workdir / "ddp-inputs").exists()
    encoder = TwoTowerEncoder.load(out)
    vectors = encoder.encode_items(["a film about space", "a quiet drama"])  # (2, dim)
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_torchrun_bad_data_stops_every_rank_with_a_clear_error(tiny_bert_dir, tmp_path):
    config = write_config(tmp_path / "c.toml", fast_config(tiny_bert_dir))
    missing = tmp_path / "no-such-data"
    proc = _torchrun("--data", str(missing), "--config", str(config), "--workdir", str(tmp_path))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0], proc.stderr[-3000:]  # rank 0's
    assert not (tmp_path / "encoders").exists()  # nothing written
