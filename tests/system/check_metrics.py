#!/usr/bin/env python3
"""check_metrics.py METRICS_FILE STATUS_JSON_FILE: parse the gateway's /metrics with
Prometheus' own text parser (python3-prometheus-client) and check its figures against
the ledger (ota-gateway status --json). Prints one line per problem; exit 1 if any."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

STATES = ["idle", "downloading", "verifying", "installing", "restarting",
          "committed", "failed", "rolled_back", "offline"]


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    ledger = json.load(open(sys.argv[2], encoding="utf-8"))
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    problems = []

    def samples(name, suffix=""):
        fam = fams.get(name)
        if fam is None:
            problems.append(f"metric family {name} missing")
            return []
        return [s for s in fam.samples if s.name == name + suffix]

    def value(name, suffix="", **labels):
        for s in samples(name, suffix):
            if all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        problems.append(f"{name}{suffix}{labels} missing")
        return None

    for st in STATES:
        want = sum(1 for d in ledger["devices"] if d["state"] == st)
        got = value("ota_gateway_devices", state=st)
        if got is not None and got != want:
            problems.append(f"devices{{state={st}}}: metrics {got}, ledger {want}")
    cstates = {}
    for r in ledger["releases"]:
        st = r["campaign"]["state"]
        cstates[st] = cstates.get(st, 0) + 1
    for st, want in cstates.items():
        got = value("ota_gateway_campaigns", state=st)
        if got is not None and got != want:
            problems.append(f"campaigns{{state={st}}}: metrics {got}, ledger {want}")
    for r in ledger["releases"]:
        c = r["campaign"]
        for outcome in ("committed", "failed", "started"):
            got = value("ota_gateway_campaign_devices", release=r["release"],
                        outcome=outcome)
            if got is not None and got != c[outcome]:
                problems.append(f"campaign {r['release']} {outcome}: metrics {got}, "
                                f"ledger {c[outcome]}")
        got = value("ota_gateway_campaign_paused", release=r["release"])
        if got is not None and got != (1 if c["paused"] and not c["aborted"] else 0):
            problems.append(f"campaign {r['release']} paused: metrics {got}")
    # A device that committed a release took all its fragments; group sending publishes
    # a fragment once for many devices, so the total is at least the largest release
    # taken, and at least what any one device was sent.
    need = max([r["fragments"] for r in ledger["releases"] if r["campaign"]["committed"]] +
               [d["frags_sent"] for d in ledger["devices"]] + [1])
    sent = value("ota_gateway_fragments_sent", "_total")
    if sent is not None and sent < need:
        problems.append(f"fragments_sent_total {sent} < {need} (ledger)")
    acks = value("ota_gateway_acks", "_total")
    if acks is not None and acks <= 0:
        problems.append("acks_total is 0 after a rollout")
    for name in ("ota_gateway_ledger_commit_seconds", "ota_gateway_loop_stall_seconds"):
        n = value(name, "_count")
        inf = value(name, "_bucket", le="+Inf")
        if n is not None and (n <= 0 or inf != n):
            problems.append(f"{name}: count {n}, +Inf bucket {inf}")
    for name in ("ota_gateway_release_fetch_seconds", "ota_gateway_release_verify_seconds"):
        n = value(name, "_count")
        if n is not None and n != len(ledger["releases"]):
            problems.append(f"{name}_count {n}, releases in the ledger "
                            f"{len(ledger['releases'])}")
    for p in problems:
        print(p)
    print(f"# {len(fams)} metric families parsed, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
