"""What a first visit transfers (issue 22): a typical signed-in page (the demo workspace's
jobs list) and everything it loads, fetched from a real server as a browser would (gzip
accepted), against what the same page transferred before: uncompressed HTML and the whole
Bootstrap (its CSS and bundle, the sizes of the files this repository vendored before it
trimmed them). Goal: ≤ 120 KiB on the wire."""

from __future__ import annotations

import gzip
import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from django.core.management import call_command

from tests.support.gateway import free_port
from tests.support.worker import database_url

ROOT = Path(__file__).resolve().parent.parent
# Bootstrap 5.3.9's bootstrap.min.css and bootstrap.bundle.min.js, as vendored before.
BEFORE_BOOTSTRAP = {"css": 232_360, "js": 80_669}
ASSET = re.compile(r'<(?:link[^>]+href|script[^>]+src)="(/static/[^"]+)"')


def run() -> None:
    call_command("seed_demo", quiet_logins=True)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url(),
        "HANGAR_STATIC_BUILT": "true",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env,
        check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        opener = signed_in(base)
        page, page_plain, headers = fetch(opener, base + "/w/vision-team/jobs/")
        html = (
            gzip.decompress(page).decode()
            if headers.get("Content-Encoding") == "gzip"
            else page.decode()
        )
        assets = ASSET.findall(html)
        sent = {"html": len(page)}
        plain = {"html": page_plain}
        cached = []
        for path in assets:
            body, size, asset_headers = fetch(opener, base + path)
            sent[path] = len(body)
            plain[path] = size
            cached.append(asset_headers.get("Cache-Control", ""))
        before = plain["html"] + sum(
            BEFORE_BOOTSTRAP["css"] if "bootstrap" in p and p.endswith(".css")
            else BEFORE_BOOTSTRAP["js"] if "bootstrap" in p and p.endswith(".js")
            else plain[p]
            for p in assets
        )  # fmt: skip
        after = sum(sent.values())
        print(
            f"{'first visit, jobs page + its assets':<44} before {before / 1024:6.1f} KiB  "
            f"after {after / 1024:6.1f} KiB on the wire (gzip; goal ≤ 120 KiB)"
        )
        for path in ["html", *assets]:
            print(f"    {path[-60:]:<60} {sent[path] / 1024:6.1f} KiB of {plain[path] / 1024:6.1f}")
        long_lived = sum("immutable" in c or "max-age=315360000" in c for c in cached)
        print(f"    assets cached for a year (hashed names): {long_lived} of {len(cached)}")
        paint(base, opener)
    finally:
        server.terminate()
        server.wait(timeout=10)


def signed_in(base: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    deadline = time.monotonic() + 30
    while True:
        try:
            opener.open(base + "/login/", timeout=5).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    token = next(c.value for c in jar if c.name == "csrftoken")
    data = urllib.parse.urlencode(
        {"username": "alice", "password": "hangar-alice", "csrfmiddlewaretoken": token}
    ).encode()
    login = base + "/login/"
    request = urllib.request.Request(login, data=data, headers={"Referer": login})  # noqa: S310
    opener.open(request, timeout=10).read()
    return opener


def fetch(opener: urllib.request.OpenerDirector, url: str) -> tuple[bytes, int, dict]:
    """The bytes on the wire (gzip asked for), the size once decoded, and the headers."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})  # noqa: S310 (http://127.0.0.1 only)
    with opener.open(request, timeout=10) as answer:
        body = answer.read()
        headers = dict(answer.headers)
    decoded = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
    return body, len(decoded), headers


# Largest contentful paint and cumulative layout shift, as Chromium reports them to the
# page (PerformanceObserver, buffered): what Lighthouse reads, without Lighthouse.
VITALS = """() => new Promise(done => {
  let lcp = 0, cls = 0;
  new PerformanceObserver(l => l.getEntries().forEach(e => lcp = e.startTime))
    .observe({type: 'largest-contentful-paint', buffered: true});
  new PerformanceObserver(l => l.getEntries().forEach(e => {
    if (!e.hadRecentInput) cls += e.value;
  })).observe({type: 'layout-shift', buffered: true});
  setTimeout(() => done({lcp, cls}), 1500);
})"""


def paint(base: str, opener: urllib.request.OpenerDirector) -> None:
    """A cold first visit in Chromium (Debian's), signed in: LCP and CLS, goal ≤ 1 s, 0."""
    import shutil

    from playwright.sync_api import sync_playwright

    jar = next(h for h in opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
    cookies = [{"name": c.name, "value": c.value or "", "url": base} for c in jar.cookiejar]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or None, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies(cookies)
            page = context.new_page()
            page.goto(base + "/w/vision-team/jobs/", wait_until="load")
            vitals = page.evaluate(VITALS)
        finally:
            browser.close()
    print(
        f"{'first visit in Chromium, jobs page':<44} LCP {vitals['lcp']:6.0f} ms "
        f"(goal ≤ 1000)  CLS {vitals['cls']:.3f} (goal 0)"
    )
