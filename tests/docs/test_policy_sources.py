#!/usr/bin/env python3
"""Every policy `kvsim policies` lists has its section in docs/policy-sources.md, headed
`## <kvsim name> — <method>` (issue 19's acceptance), and no section names a policy kvsim lacks:
a policy added without saying which original code it follows, or renamed without its section,
fails here.

usage: test_policy_sources.py --kvsim BIN --doc docs/policy-sources.md
"""
import argparse
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--doc", required=True)
    args = ap.parse_args()
    listing = subprocess.run([args.kvsim, "policies"], capture_output=True, text=True, check=True).stdout
    policies = set(re.findall(r"^([a-z0-9_]+): ", listing, re.M))
    with open(args.doc, encoding="utf-8") as f:
        headings = re.findall(r"^## (\S+) — \S", f.read(), re.M)
    sections = set(headings)
    problems = []
    if len(policies) < 20:
        problems.append("kvsim policies listed only %d policies: %s" % (len(policies), sorted(policies)))
    for name in sorted(policies - sections):
        problems.append("policy '%s' has no '## %s — <method>' section in %s" % (name, name, args.doc))
    for name in sorted(sections - policies):
        problems.append("section '## %s — ...' names no policy of kvsim policies" % name)
    for name in sorted({h for h in headings if headings.count(h) > 1}):
        problems.append("policy '%s' has %d sections" % (name, headings.count(name)))
    for p in problems:
        print("FAIL: " + p)
    print("%d policies, %d sections, %d problems" % (len(policies), len(sections), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
