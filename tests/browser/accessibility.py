"""The accessibility gate of the browser tests (issue 22): axe-core, as Deque ships it
(bundled by axe-playwright-python), runs on every page a browser test opens — each load,
and the page as the test leaves it (forms with errors, live panels, empty states) — and a
WCAG 2.1 A or AA violation fails the test, naming the rule, the page and the elements."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import axe_playwright_python

AXE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SETTLED = (
    "() => { const s = document.createElement('style'); s.textContent = '*, *::before, "
    "*::after { transition: none !important; animation: none !important; }'; "
    "document.head.appendChild(s); }"
)
# One run at a time per page (a load's check and the test's last one may meet): queued.
RUN = (
    "async () => { const go = () => axe.run(document, {runOnly: {type: 'tag', values: TAGS}, "
    "resultTypes: ['violations']}); window.__hangarAxe = (window.__hangarAxe || "
    "Promise.resolve()).then(go, go); const r = await window.__hangarAxe; "
    "return r.violations.map(v => ({id: v.id, impact: v.impact, "
    "help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + "
    "(n.failureSummary || '').split('\\n').slice(1, 2).join(''))})); }"
).replace("TAGS", json.dumps(TAGS))


@dataclass
class Gate:
    """What axe found, page by page, over one test."""

    checked: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def check(self, page) -> None:
        url = page.url
        if not url.startswith("http"):
            return
        try:
            if not page.evaluate("() => typeof axe !== 'undefined'"):
                page.evaluate(AXE)
                # Colours as they settle: a button caught mid-way through its 0.15 s hover
                # fade is no colour a person reads.
                page.evaluate(SETTLED)
            violations = page.evaluate(RUN)
        except Exception as exc:  # the page went away under the check (a navigation)
            if "context was destroyed" in str(exc) or "navigat" in str(exc):
                return
            raise
        self.checked.append(url)
        for violation in violations:
            where = "; ".join(violation["nodes"])
            self.found.append(
                f"{violation['id']} ({violation['impact']}) on {url}: {violation['help']} — {where}"
            )

    def report(self) -> str:
        unique = list(dict.fromkeys(self.found))
        return "\n".join(unique)
