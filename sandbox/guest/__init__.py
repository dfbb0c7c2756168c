"""Corral's in-container tool server (the "guest").

Standard library only, Python 3.11+. Bind-mounted read-only into every sandbox at
``/opt/corral/corral_guest`` and started as ``python3 -B -c "...runpy.run_module(
'corral_guest')..." --socket /run/corral/rpc.sock --workspace /workspace``; the host imports
the same modules as ``sandbox.guest.*`` (for the wire framing), so every import in here is
relative. The protocol is described in docs/rpc.md.
"""
