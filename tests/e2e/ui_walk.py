"""A walk through the web UI in headless Chromium (Debian's, driven by Playwright), against
a control plane that `icefloe demo --serve` left running with the demo's data."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("ICEFLOE_CHROMIUM", "/usr/bin/chromium")
# As on every machine here: no sandbox as root, and no background calls to a closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LINK = re.compile(r"sign in once as (\w+) \((\w+)\): (\S+)")


def chromium() -> str | None:
    """The Chromium executable, or None when this machine has none."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def sign_in_links(output: str) -> dict[str, str]:
    """The one-time sign-in links `icefloe demo --serve` printed, by person."""
    return {name: link for name, _, link in LINK.findall(output)}


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    assert executable, "no Chromium: install Debian's package (apt-get install chromium)"
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Walk:
    """One signed-in person's tab, saving a screenshot of each page it shows."""

    def __init__(self, launched: Any, link: str, shots: Path, who: str) -> None:
        self.context = launched.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.shots = shots
        self.who = who
        self.base = link.split("/ui/", 1)[0]
        self.page.goto(link)
        self.page.click("#sign-in")
        self.page.wait_for_url(f"{self.base}/ui/")

    def go(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{self.who}-{name}.png"), full_page=True)

    def csrf(self) -> str:
        token: str = self.page.locator('input[name="csrf"]').first.get_attribute("value")
        return token

    def close(self) -> None:
        self.context.close()


def walk_the_demo(output: str, shots: Path, deployment: str) -> dict[str, Any]:
    """Every page with the demo's data, in the order a user would click; returns what it saw
    (the caller asserts on the store as well)."""
    links = sign_in_links(output)
    assert set(links) == {"demo", "ana", "raj"}, output[-3000:]
    seen: dict[str, Any] = {}
    with browser() as launched:
        seen["live_log"] = _ana_runs_a_job_and_watches_its_log(launched, links["ana"], shots)
        seen.update(_admin_walks_the_chain(launched, links["demo"], shots, deployment))
        seen.update(_raj_only_views(launched, links["raj"], shots, seen["stale_csrf"]))
    return seen


def _ana_runs_a_job_and_watches_its_log(launched: Any, link: str, shots: Path) -> list[int]:
    from playwright.sync_api import Error as PlaywrightError

    ana = Walk(launched, link, shots, "ana")
    page = ana.page
    assert page.locator("#who").inner_text().startswith("ana (editor key)")
    ana.shot("overview")
    page.click("text=lending-demo")
    page.wait_for_selector("table.jobs")
    ana.shot("project")
    page.click('button.run-job[data-job="Simulation"]')
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f-]+$"))
    log = page.locator("#log")
    sizes = []
    for _ in range(60):  # the script appends what the run prints, as it prints it
        try:
            sizes.append(len(log.inner_text()))
            if page.locator("#run-status").inner_text().startswith("SUCCEEDED"):
                break
        except PlaywrightError:  # the page reloads itself once the run has ended
            pass
        page.wait_for_timeout(500)
    page.wait_for_load_state()
    page.wait_for_selector("#run-status >> text=SUCCEEDED")
    sizes.append(len(log.inner_text()))
    assert "predictions 501-600" in log.inner_text(), log.inner_text()[-2000:]
    ana.shot("run")
    ana.close()
    return sizes


def _admin_walks_the_chain(launched: Any, link: str, shots: Path, deployment: str
                           ) -> dict[str, Any]:
    admin = Walk(launched, link, shots, "demo")
    page = admin.page
    seen: dict[str, Any] = {"firing_overview": page.locator("#firing").inner_text()}
    # The deployment: its accuracy chart falls and its alert fired.
    page.click(f'a[href="/ui/deployments/{deployment}"]')
    page.wait_for_selector("#quality svg")
    seen["accuracy_points"] = page.locator("#quality figure").first.locator(
        "circle title").evaluate_all("ts => ts.map(t => t.textContent)")
    seen["rule_states"] = page.locator("#rules td.state").all_inner_texts()
    seen["alert_history"] = page.locator("#alert-history").inner_text()
    admin.shot("deployment")
    # The chain back: deployment -> model version -> its lineage -> the table snapshot.
    page.click("h1 a")  # the model version the deployment serves
    page.wait_for_selector("#lineage")
    admin.shot("model")
    seen["lineage_kinds"] = page.locator("#lineage h3").evaluate_all(
        "hs => hs.map(h => h.textContent)")
    seen["reproduce"] = page.locator("#reproduce").inner_text()
    seen["chain_snapshots"] = [int(n.split("@")[1]) for n in page.locator(
        "#lineage .node.snapshot").evaluate_all("ns => ns.map(n => n.dataset.node)")]
    page.click("#trained-on")
    page.wait_for_url(re.compile(r".*/ui/tables/lending\.loans\?at=\d+"))
    seen["chain_snapshot"] = int(page.url.rsplit("=", 1)[1])
    # Compare two snapshots: the first (s1) and the current one.
    page.goto(f"{admin.base}/ui/tables/lending.loans")
    radios_at = page.locator('input[name="at"]')
    radios_at.last.check()  # the oldest snapshot
    page.locator('input[name="compare"]').first.check()  # the newest
    page.click("#compare")
    page.wait_for_selector("#diff")
    seen["diff"] = page.locator("ul.diff").inner_text()
    admin.shot("table-compare")
    # Roll back to s1 behind the confirmation.
    page.locator("a.rollback").last.click()
    page.wait_for_selector("#plan")
    seen["plan"] = page.locator("#plan").inner_text()
    admin.shot("rollback-confirm")
    page.click("#confirm-rollback")
    page.wait_for_selector("#done")
    seen["current_after_rollback"] = int(page.locator("#current").inner_text())
    admin.shot("table-after-rollback")
    for name, path in (("tables", "/ui/tables"), ("sql", "/ui/sql"), ("models", "/ui/models"),
                       ("deployments", "/ui/deployments"), ("audit", "/ui/audit")):
        admin.go(path)
        admin.shot(name)
    seen["audit"] = page.locator("#audit").inner_text()
    seen["stale_csrf"] = admin.csrf()
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/ui/signin$"))
    page.goto(f"{admin.base}/ui/")
    seen["after_sign_out"] = page.url
    admin.close()
    return seen


def _raj_only_views(launched: Any, link: str, shots: Path, stale: str) -> dict[str, Any]:
    raj = Walk(launched, link, shots, "raj")
    page = raj.page
    seen: dict[str, Any] = {}
    raj.go("/ui/tables/lending.loans")
    seen["viewer_rollback_links"] = page.locator("a.rollback").count()
    before = page.locator("#current").inner_text()
    first = page.locator('input[name="at"]').last.get_attribute("value")
    raj.shot("table")
    raj.go("/ui/deployments")
    page.locator("table a").first.click()
    page.wait_for_selector("#rules")
    seen["viewer_buttons"] = page.locator("#redeploy, #stop-deployment, #stop-run").count()
    raj.shot("deployment")
    token = raj.csrf()
    forged = page.request.post(f"{raj.base}/ui/tables/lending.loans/rollback",
                               form={"csrf": token, "to": first or ""}, max_redirects=0)
    seen["forged_status"] = forged.status
    old = page.request.post(f"{raj.base}/ui/tables/lending.loans/rollback",
                            form={"csrf": stale, "to": first or ""}, max_redirects=0)
    seen["stale_status"], seen["stale_text"] = old.status, old.text()
    raj.go("/ui/tables/lending.loans")
    seen["viewer_current_before"], seen["viewer_current_after"] = (
        before, page.locator("#current").inner_text())
    raj.close()
    return seen
