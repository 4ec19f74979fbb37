"""The HTML + JSON report: same numbers in both, self-contained, and drawn by a real browser."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from recsys.config import EvalConfig
from recsys.evaluation.evaluate import evaluate_ab
from recsys.evaluation.report import render_html

ROOT = Path(__file__).resolve().parents[2]
FAST = EvalConfig(bootstrap=200)

# Appended to a copy of the report: after load, write every image's natural size, any error
# event (script errors and failed resource loads) and the verdict's position into the DOM.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const v = document.getElementById('verdict');
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight]),
    errors: window.__errors,
    verdict: v.textContent, top: v.getBoundingClientRect().top,
    fontSize: parseFloat(getComputedStyle(v).fontSize),
  });
  document.body.appendChild(probe);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=600, p_a=0.15, p_b=0.3)
    result = evaluate_ab(ranked_a, ranked_b, data, FAST, names=("champion", "challenger"))
    out = tmp_path_factory.mktemp("report")
    path = render_html(result.comparison, result.verdict, result.extras(data="synthetic"), out)
    return result, path


def test_files_and_json_numbers(report):
    result, path = report
    assert path.name == "report.html" and path.exists()
    summary = json.loads((path.parent / "summary.json").read_text(), parse_constant=_no_nan)
    assert summary["verdict"]["decision"] == result.verdict.decision == "promote"
    cells = {(c["metric"], c["segment"]): c for c in summary["comparison"]["cells"]}
    ndcg = result.comparison.cell("ndcg")
    assert cells[("ndcg", "all")]["mean_b"] == ndcg.mean_b
    assert cells[("ndcg", "all")]["lift_ci"] == list(ndcg.lift_ci)
    assert len(cells) == len(result.comparison.cells)
    diff = summary["per_user_differences"]["ndcg"]
    assert diff["share_better"] + diff["share_equal"] + diff["share_worse"] == pytest.approx(1)
    assert set(summary["beyond_accuracy"]["novelty"]) == {"champion", "challenger"}


def test_html_is_self_contained_and_leads_with_the_verdict(report):
    result, path = report
    page = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert page.count("<img ") == 4 and page.count("data:image/png;base64,") == 4
    body = page[page.index("<body>") :]
    assert body.index("PROMOTE") < body.index("<table")  # the verdict comes first
    assert result.verdict.rule.replace(">", "&gt;").replace("<", "&lt;") in page
    assert f"{result.comparison.cell('ndcg').mean_b:.4f}" in page


def _chromium() -> str:
    """Debian's chromium; installed by tests/system_deps.sh when missing (fails if it cannot)."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["bash", str(ROOT / "tests" / "system_deps.sh")], check=False)
        found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is missing and tests/system_deps.sh could not install it")
    return found


@pytest.mark.integration
def test_report_renders_in_headless_chromium(report, tmp_path):
    _, path = report
    probed = tmp_path / "probed.html"
    probed.write_text(path.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probed.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"probe missing from the DOM dump: {done.stdout[-500:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(probe["images"]) == 4
    for alt, width, height in probe["images"]:
        assert width > 100 and height > 100, f"plot {alt!r} did not render: {width}x{height}"
    assert probe["errors"] == []
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    assert probe["verdict"] == "PROMOTE"
    assert probe["top"] < 100 and probe["fontSize"] >= 32  # big, at the top, no scrolling


def _no_nan(name):
    raise AssertionError(f"summary.json holds {name}: not strict JSON")
