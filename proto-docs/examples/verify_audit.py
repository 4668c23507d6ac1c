"""Recomputes an org's audit hash chain from an NDJSON export
(GET /orgs/{id}/audit/export); see proto-docs/admin.md.

    python3 verify_audit.py export.ndjson
"""
import hashlib
import json
import sys

KEYS = ("action", "actor", "after", "at", "before", "orgId", "requestId", "seq", "target")

prev, expected_seq = "0" * 64, 1
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        if not line.strip():
            continue
        e = json.loads(line)
        body = {k: e.get(k) for k in KEYS}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        h = hashlib.sha256((prev + canon).encode("utf-8")).hexdigest()
        if e["seq"] != expected_seq or e["prevHash"] != prev or e["hash"] != h:
            sys.exit(f"broken at seq {expected_seq}")
        prev, expected_seq = h, expected_seq + 1
print(f"ok: {expected_seq - 1} entries, head {prev}")
