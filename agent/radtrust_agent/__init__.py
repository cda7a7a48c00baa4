"""The site agent: evaluates federated validation jobs at a hospital, sends only aggregates.

Plain Python (no Django, no database, no broker): it talks to the central server
through its REST API with a token scoped to its institution (``client``), keeps
its per-job progress in a small JSON file under the data root (``state``), and
evaluates with the same engine as a central run (``evaluation``). ``jobs`` drives
a job from claim to report; ``__main__`` is the command line::

    python -m radtrust_agent --server URL --token TOKEN --data-root DIR [--once]
    python -m radtrust_agent approve --data-root DIR --job ID --by NAME
    python -m radtrust_agent status --data-root DIR
"""

AGENT_VERSION = "1"
