"""QuickFIX's own FIX 4.4 server acceptance scenarios (logon, sequencing,
resend, gap fill, garbled input, header and field validation, heartbeats,
logout...) pass against the session-test profile: QuickFIX's Ruby runner
plays every definition in test/definitions/server/fix44 against the real
server, which validates with QuickFIX's FIX 4.4 data dictionary. `make tools`
fetches the runner, the definitions and the dictionary into build/quickfix
from the quickfix source package."""

import re
import subprocess
from pathlib import Path

QUICKFIX = Path(__file__).parents[2] / "build" / "quickfix"
SCENARIOS = QUICKFIX / "test" / "definitions" / "server" / "fix44"


def test_quickfix_fix44_server_acceptance_scenarios(start):
    scenarios = sorted(p.relative_to(QUICKFIX / "test") for p in SCENARIOS.glob("*.def"))
    assert len(scenarios) >= 50, "make tools fetches QuickFIX's acceptance tests"
    server = start("--fix-test-session", "TW:ISLD", "--fix-test-dictionary",
                   str(QUICKFIX / "spec" / "FIX44.xml"))  # fmt: skip
    run = subprocess.run(
        ["ruby", "-I.", "Runner.rb", "127.0.0.1", str(server.fix_port), *map(str, scenarios)],
        cwd=QUICKFIX / "test", capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    results = dict(re.findall(r"<test name='([^']+)' result='(\w+)'", run.stdout))
    assert sorted(results) == sorted(map(str, scenarios)), run.stdout + run.stderr
    failed = [name for name, result in results.items() if result != "success"]
    assert not failed, run.stdout
    assert run.returncode == 0
