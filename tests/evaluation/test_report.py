"""The HTML + JSON + parquet report: same numbers in all, self-contained, the primary decision
first, example lists, and drawn by a real browser with no table overflowing its column."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from live_traffic import DAY, T0, WINDOW, traffic

from recsys.config import EvalConfig
from recsys.evaluation.evaluate import evaluate_ab
from recsys.evaluation.examples import example_lists, sample_rows
from recsys.evaluation.live import live_ab_report
from recsys.evaluation.report import render_html

ROOT = Path(__file__).resolve().parents[2]
FAST = EvalConfig(bootstrap=200)
# a title with no break opportunity: it must wrap inside its column, not widen the page
LONG = "Supercalifragilistic" * 6

# Appended to a copy of the report: after load, write every image's natural size, any error
# event (script errors and failed resource loads), the verdict's position, the order of the
# sections, the example lists, and every table or image that reaches past its column.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const v = document.getElementById('verdict');
  const main = document.querySelector('main');
  const style = getComputedStyle(main);
  const right = main.getBoundingClientRect().right - parseFloat(style.paddingRight);
  const boxes = 'main table, main img, main .example, main .cols > div';
  const over = [...document.querySelectorAll(boxes)].filter(
    t => t.getBoundingClientRect().right > right + 0.5 || t.scrollWidth > t.clientWidth + 0.5
  ).map(t => [t.tagName, t.id || t.alt || '', t.getBoundingClientRect().right, right]);
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight]),
    errors: window.__errors,
    verdict: v.textContent, top: v.getBoundingClientRect().top,
    fontSize: parseFloat(getComputedStyle(v).fontSize),
    firstTable: document.querySelector('table').id,
    examples: [...document.querySelectorAll('.example')].map(
      e => [...e.querySelectorAll('ol')].map(o => o.children.length)),
    overflowing: over, pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
  });
  document.body.appendChild(probe);
});
</script>"""


def _examples(ranked_a, ranked_b, data, n: int = 4):
    """Example lists with made-up titles (one very long) for a few sampled synthetic users."""
    rows = sample_rows(data.n_users, n, seed=0)
    title = {str(i): f"Item {i}: a title" for i in range(300)} | {"7": LONG}
    ranked = {
        name: [[str(i) for i in matrix[r] if i >= 0] for r in rows]
        for name, matrix in (("champion", ranked_a), ("challenger", ranked_b))
    }
    return example_lists(
        [f"user-{r}" for r in rows],
        [[str(i) for i in range(r % 7, r % 7 + 12)] + ["7"] for r in rows],
        [[str(i) for i in data.relevant[r]] for r in rows],
        ranked,
        title,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory, synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=600, p_a=0.15, p_b=0.3)
    user_ids = [f"user-{u}" for u in range(600)]
    result = evaluate_ab(
        ranked_a, ranked_b, data, FAST, names=("champion", "challenger"), user_ids=user_ids
    )
    result.examples = _examples(ranked_a, ranked_b, data)
    out = tmp_path_factory.mktemp("report")
    path = render_html(result.comparison, result.verdict, result.extras(data="synthetic"), out)
    return result, path


@pytest.fixture(scope="module")
def live_report(tmp_path_factory):
    """A live report with everything on it: SRM (no verdict), a bundle change, anonymous
    exposures and a long bundle name."""
    exposures, interactions = traffic(n_users=600, share_b=0.4, anonymous_a=30, seed=9)
    long_bundle = "20260101T020000Z-" + "f" * 64
    exposures = exposures.with_columns(
        bundle=pl.when((pl.col("variant") == "A") & (pl.col("time") >= T0 + 5 * DAY))
        .then(pl.lit(long_bundle))
        .otherwise(pl.col("bundle"))
    )
    result = live_ab_report(exposures, interactions, WINDOW, 10, FAST, shares={"A": 1, "B": 1})
    out = tmp_path_factory.mktemp("live")
    return result, render_html(result.comparison, result.verdict, result.extras, out)


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


def test_per_user_parquet(report):
    result, path = report
    frame = pl.read_parquet(path.parent / "per_user.parquet")
    families = ["segment_history", "segment_heldout_item", "segment_heldout_popularity"]
    metrics = [f"{m}_{side}" for m in FAST.metrics for side in ("a", "b")]
    assert frame.columns == ["user_id", *families, *metrics]
    assert frame.height == 600 and frame["user_id"][5] == "user-5"
    assert np.array_equal(frame["ndcg_b"].to_numpy(), result.b.metrics["ndcg"])
    assert frame.select(families).null_count().sum_horizontal().item() == 0  # partitions
    # a segment cell of the report is the mean over that segment's rows of the export
    cell = next(c for c in result.comparison.cells if c.segment.startswith("history"))
    rows = frame.filter(pl.col("segment_history") == cell.segment)
    assert rows.height == cell.n_users
    assert rows[f"{cell.metric}_a"].mean() == pytest.approx(cell.mean_a)


def test_html_is_self_contained_and_leads_with_the_primary_decision(report):
    result, path = report
    page = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert page.count("<img ") == 4 and page.count("data:image/png;base64,") == 4
    body = page[page.index("<body>") :]
    assert body.index("PROMOTE") < body.index("<table id='primary'") == body.index("<table")
    assert body.index("<table id='primary'") < body.index("Exploratory: secondary metrics")
    assert body.index("Exploratory: secondary metrics") < body.index("Exploratory: segments")
    assert result.verdict.rule.replace(">", "&gt;").replace("<", "&lt;") in page
    assert "primary family of 1 test" in result.verdict.rule
    assert f"{result.comparison.cell('ndcg').mean_b:.4f}" in page
    assert page.count("<article class='example'>") == 4
    examples = page[page.index("id='examples'") :]
    assert "history (latest 10 of 13)" in examples and "<li>" + LONG in examples  # latest first


def _chromium() -> str:
    """Debian's chromium; installed by tests/system_deps.sh when missing (fails if it cannot)."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["bash", str(ROOT / "tests" / "system_deps.sh")], check=False)
        found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is missing and tests/system_deps.sh could not install it")
    return found


def _probe(path: Path, tmp_path: Path, width: int) -> dict:
    """Load the report in headless Chromium at `width` px and return what PROBE recorded."""
    probed = tmp_path / f"probed-{width}.html"
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
        f"--user-data-dir={tmp_path / f'profile-{width}'}",
        f"--window-size={width},900",
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
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    assert probe["errors"] == []
    for alt, w, h in probe["images"]:
        assert w > 100 and h > 100, f"plot {alt!r} did not render: {w}x{h}"
    # the decision is big, at the top, before any table; the first table is the primary one
    assert probe["top"] < 100 and probe["fontSize"] >= 32
    assert probe["firstTable"] == "primary"
    assert probe["overflowing"] == [], f"past their column at {width} px: {probe['overflowing']}"
    assert probe["pageWidth"] <= probe["viewport"]  # no horizontal scrolling
    return probe


@pytest.mark.integration
@pytest.mark.parametrize("width", [1280, 1024])
def test_report_renders_in_headless_chromium(report, tmp_path, width):
    _, path = report
    probe = _probe(path, tmp_path, width)
    assert len(probe["images"]) == 4
    assert probe["verdict"] == "PROMOTE"
    # 4 sampled users, each with the latest 10 of 13 history items beside both top 10s
    assert probe["examples"] == [[10, 10, 10]] * 4


@pytest.mark.integration
def test_live_report_with_warnings_renders_in_headless_chromium(live_report, tmp_path):
    result, path = live_report
    assert result.verdict.decision == "no_verdict" and result.verdict.warnings
    probe = _probe(path, tmp_path, 1024)
    assert probe["verdict"] == "NO VERDICT" and probe["examples"] == []


def _no_nan(name):
    raise AssertionError(f"summary.json holds {name}: not strict JSON")
