"""The pass/fail tally of the CLI test scripts: check() records one check (printing a failure),
summary() prints the counts and returns the script's exit status."""

passed = failed = 0


def check(cond, what):
    """Records one check; returns `cond`, so a caller can stop when it fails."""
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)
    return cond


def summary(template="%d passed, %d failed"):
    print(template % (passed, failed))
    return 1 if failed else 0
