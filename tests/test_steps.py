"""Resumable steps and the work-directory lock."""

import os
import subprocess
import sys
import textwrap

import pytest

from recsys.steps import LockedError, StepRunner, WorkdirLock


def test_steps_resume_after_a_crash(tmp_path):
    calls = []

    def ok(name):
        def fn(out):
            calls.append(name)
            (out / "x.txt").write_text(name)
            return {"name": name}

        return fn

    def boom(out):
        raise RuntimeError("crash inside step b")

    runner = StepRunner(tmp_path)
    runner.run("a", ok("a"))
    with pytest.raises(RuntimeError):
        runner.run("b", boom)
    assert runner.done("b") is None
    again = StepRunner(tmp_path)
    assert again.run("a", ok("a")) == {"name": "a"}
    again.run("b", ok("b"))
    assert calls == ["a", "b"]
    assert [r.resumed for r in again.records] == [True, False]


def test_lock_excludes_a_second_process(tmp_path):
    holder = textwrap.dedent(
        f"""
        import sys, time
        from recsys.steps import WorkdirLock
        with WorkdirLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):
            with WorkdirLock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()
    with WorkdirLock(tmp_path):  # released when the holder died
        assert os.path.exists(tmp_path / "nightly.lock")


def test_crash_hook_kills_after_manifest(tmp_path):
    script = textwrap.dedent(
        f"""
        from recsys.steps import StepRunner
        r = StepRunner({str(tmp_path)!r})
        r.run("a", lambda out: {{"ok": 1}})
        r.run("b", lambda out: {{"ok": 2}})
        """
    )
    env = {**os.environ, "RECSYS_TEST_CRASH_AFTER": "a"}
    proc = subprocess.run([sys.executable, "-c", script], env=env)
    assert proc.returncode == -9
    runner = StepRunner(tmp_path)
    assert runner.done("a")["result"] == {"ok": 1}
    assert runner.done("b") is None
