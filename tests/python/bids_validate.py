"""Runs the BIDS validator (bids-validator-deno, bids-standard's schema-based validator) on a
dataset and prints {"errors": [...], "warnings": [...]} as JSON, each issue as
"CODE location: message".

  bids_validate.py DATASET
"""

import json
import os
import subprocess
import sys

from deno import find_deno_bin
import bids_validator_deno

dataset = sys.argv[1]
bundle = os.path.join(os.path.dirname(bids_validator_deno.__file__), "bids-validator.js")
out = subprocess.run(
    [os.fsdecode(find_deno_bin()), "--allow-read", "--allow-env", "--allow-write",
     "--allow-run=git", bundle, dataset, "--json"],
    capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
)
try:
    report = json.loads(out.stdout)
except json.JSONDecodeError:
    sys.exit(f"the validator printed no JSON (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
found = {"errors": [], "warnings": []}
for issue in report["issues"]["issues"]:
    key = "errors" if issue.get("severity") == "error" else "warnings"
    found[key].append(f"{issue['code']} {issue.get('location', '')}: {issue.get('issueMessage', '')}".strip())
found["files"] = report.get("summary", {}).get("totalFiles")
print(json.dumps(found))
