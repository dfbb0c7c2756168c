#!/usr/bin/env python3
"""Exec Playwright's bundled Node.js driver as the agent (see privs.py).

Playwright runs `PLAYWRIGHT_NODEJS_PATH CLI_JS run-driver`; this file stands in for node. It is
started by the tool server (real uid 0, effective uid the agent's), so exec left its real uid 0
and its saved uid the agent's: setting all three to the agent's needs no privilege and clears
every capability before node (and Chromium under it) starts.
"""

import os
import sys

uid = int(os.environ.pop("CORRAL_AGENT_UID"))
gid = int(os.environ.pop("CORRAL_AGENT_GID"))
os.environ.pop("PLAYWRIGHT_NODEJS_PATH", None)
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
cli = sys.argv[1]  # .../playwright/driver/package/cli.js
node = os.path.join(os.path.dirname(os.path.dirname(cli)), "node")
os.execv(node, [node, *sys.argv[1:]])
