#!/usr/bin/python3
"""report.html in a real browser (issue 21 §3): tools/plot.py's reports of the smoke sweep (4
figures) and of a small capacity plan (plan_load.png), opened in headless Chromium (Debian package
`chromium`), load without errors and show every figure.

Why this check and not --dump-dom or --screenshot: a DOM dump lists the <img> tags whether or not
their files load, and a screenshot cannot say which image is broken. Instead the test drives
Chromium over its DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ended by NUL
on file descriptors 3 and 4, no network port, no extra package), waits for the page's load event
and asks the page itself, for every <img>: complete, naturalWidth x naturalHeight (the browser
decoded the file; they must equal the PNG header's size on disk) and the reading aid before it.
Any JavaScript exception, console error or failed resource load seen while loading fails the test.
A copy of the report with one image file renamed away must fail the same check (the check can see
a missing image).

Skipped (exit 77, ctest SKIP_RETURN_CODE) with the reason where Chromium is not installed or does
not start; tools/bootstrap.sh installs it, so CI runs it."""
import argparse
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import checks
from checks import check

SKIP = 77
PLAN = """[model]
preset = llama-3.1-8b
[workload]
arrivals = %s
chunk_tokens = 1024
[policy]
spec = snapkv(budget=0.2, prefill=chunk)
[hardware]
preset = h100-sxm
[serving]
max_batch_tokens = 1024
slo = ttft=0.5s, tpot=30ms
profile_decode_tokens = 64
"""
ap = argparse.ArgumentParser()
ap.add_argument("--kvsim", required=True)
ap.add_argument("--workdir", required=True)
ap.add_argument("--sweep", required=True)
args = ap.parse_args()
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if chromium is None:
    print("SKIP: chromium is not installed (Debian package `chromium`; tools/bootstrap.sh installs it)")
    sys.exit(SKIP)


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe (Chrome DevTools Protocol)."""

    def __init__(self, profile, log):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Above 4, so that placing them on 3 and 4 in the child cannot overwrite one another.
        keep = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)

        def on_3_and_4():
            os.dup2(keep[0], 3)
            os.dup2(keep[1], 4)
        # Without the background-networking flags it keeps trying to reach Google's servers.
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, "--remote-debugging-pipe", "about:blank"],
            preexec_fn=on_3_and_4, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=log)
        # stderr to a file: a pipe nobody reads would stall chromium once its D-Bus complaints fill it.
        for fd in keep:
            os.close(fd)
        self.buf, self.next_id, self.events = b"", 0, []

    def receive(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout_s=10):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout_s
        while True:
            m = self.receive(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m["result"]
            self.events.append(m)

    def close(self):
        try:
            self.call("Browser.close", timeout_s=5)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# For each <img>: its src, whether it finished, the decoded size, and the reading aid just before it.
IMAGES = """JSON.stringify([...document.images].map(i => {
  const aid = i.previousElementSibling;
  return {src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
          aid: aid && aid.className === 'read' ? aid.textContent : ''};
}))"""


def load(browser, session, path):
    """Opens file://path; returns (document.readyState, the images, the errors seen while loading)."""
    browser.events.clear()
    browser.call("Page.navigate", {"url": "file://" + path}, session)
    deadline = time.time() + 10
    while not any(e.get("method") == "Page.loadEventFired" for e in browser.events):
        browser.events.append(browser.receive(deadline))
    state = browser.call("Runtime.evaluate", {"expression": "document.readyState", "returnByValue": True}, session)
    images = browser.call("Runtime.evaluate", {"expression": IMAGES, "returnByValue": True}, session)
    errors = []
    for e in browser.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append("exception: " + p["exceptionDetails"].get("text", "?"))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append("log: %s %s" % (p["entry"]["text"], p["entry"].get("url", "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            errors.append("console.error")
        elif m == "Network.loadingFailed":
            errors.append("load failed: " + p.get("errorText", "?"))
    return state["result"]["value"], json.loads(images["result"]["value"]), errors


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


shutil.rmtree(args.workdir, ignore_errors=True)
os.makedirs(args.workdir)
res = os.path.join(args.workdir, "res")
subprocess.run([args.kvsim, "sweep", args.sweep, "--out", res, "-q", "-j", "2"], check=True, stdout=subprocess.DEVNULL)
plots = os.path.join(args.workdir, "plots")
subprocess.run([sys.executable, os.path.join(root, "tools", "plot.py"), res, "--out", plots], check=True,
               stdout=subprocess.DEVNULL)
# And a capacity plan's report (plan_load.png), on 40 requests of the Azure sample.
plan_ini = os.path.join(args.workdir, "plan.ini")
with open(plan_ini, "w") as f:
    f.write(PLAN % os.path.join(root, "tests", "data", "azure_conv_sample.csv"))
plan = os.path.join(args.workdir, "plan")
subprocess.run([args.kvsim, "plan", plan_ini, "--max-requests", "40", "--out", plan, "-q"], check=True,
               stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, os.path.join(root, "tools", "plot.py"), plan], check=True, stdout=subprocess.DEVNULL)
reports = {os.path.join(plots, "report.html"): 4, os.path.join(plan, "plots", "report.html"): 1}
figures = {}
for report, count in reports.items():
    figures[report] = re.findall(r"<img src='([^']+)'", open(report).read())
    check(len(figures[report]) == count, "%s references %d figures: %s" % (report, count, figures[report]))
referenced = figures[os.path.join(plots, "report.html")]

# A copy whose first figure is missing: the same check must see it.
broken = os.path.join(args.workdir, "broken")
shutil.copytree(plots, broken)
os.rename(os.path.join(broken, referenced[0]), os.path.join(broken, referenced[0] + ".gone"))

profile = tempfile.mkdtemp(prefix="chromium-", dir=args.workdir)
log_path = os.path.join(args.workdir, "chromium.log")
with open(log_path, "w") as log:
    browser = Browser(profile, log)
try:
    target = browser.call("Target.createTarget", {"url": "about:blank"}, timeout_s=30)["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
except (OSError, RuntimeError, TimeoutError, EOFError) as e:
    browser.close()
    tail = open(log_path, errors="replace").read().strip().splitlines()[-2:]
    print("SKIP: %s does not start (%s); its stderr ends: %s" % (chromium, e, " | ".join(tail) or "(empty)"))
    sys.exit(SKIP)
try:
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(domain + ".enable", session=session)
    for report in reports:
        t0 = time.time()
        state, images, errors = load(browser, session, report)
        print("%s loaded in %.2f s: %d images" % (report, time.time() - t0, len(images)))
        check(state == "complete", "document.readyState is %r" % state)
        check(errors == [], "no errors while loading: %s" % errors)
        check([i["src"] for i in images] == figures[report], "the page shows the images the report references")
        for i in images:
            on_disk = png_size(os.path.join(os.path.dirname(report), i["src"]))
            check(i["complete"] and on_disk is not None and (i["w"], i["h"]) == on_disk,
                  "%s decoded by the browser at %dx%d, the PNG's own size %s" % (i["src"], i["w"], i["h"], on_disk))
            check(len(i["aid"]) > 40, "%s has a reading aid before it: %r" % (i["src"], i["aid"][:60]))
    state, images, errors = load(browser, session, os.path.join(broken, "report.html"))
    bad = [i["src"] for i in images if not (i["complete"] and i["w"] > 0)]
    check(bad == [referenced[0]] and any("load failed" in e for e in errors),
          "the check sees a missing image: broken %s, errors %s" % (bad, errors))
finally:
    browser.close()
sys.exit(checks.summary())
