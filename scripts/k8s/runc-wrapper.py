#!/usr/bin/python3
"""OCI runtime for the test cluster's dockerd: fixes the bundle's config.json, then execs runc.

Root on these machines has no CAP_SYS_RESOURCE in its bounding set, so runc fails to apply a
capability set that holds it ("unable to apply caps") and to set a negative oom_score_adj (the
kubelet's pause container asks for -998: "can't get final child's PID from pipe: EOF"). This
drops CAP_SYS_RESOURCE from every capability set and raises a negative oomScoreAdj to 0.
"""
import json
import os
import sys

RUNC = "/usr/sbin/runc"


def bundle(args):
    for i, arg in enumerate(args):
        if arg in ("--bundle", "-b") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--bundle="):
            return arg.split("=", 1)[1]
    return os.getcwd()


args = sys.argv[1:]
if "create" in args or "run" in args:
    path = os.path.join(bundle(args), "config.json")
    if os.path.exists(path):
        with open(path) as f:
            config = json.load(f)
        process = config.get("process", {})
        for name, caps in process.get("capabilities", {}).items():
            process["capabilities"][name] = [c for c in caps if c != "CAP_SYS_RESOURCE"]
        if process.get("oomScoreAdj", 0) < 0:
            process["oomScoreAdj"] = 0
        with open(path, "w") as f:
            json.dump(config, f)
os.execv(RUNC, [RUNC] + args)
