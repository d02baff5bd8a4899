"""`python -m bench.agent` runs the node agent."""

from bench.agent.server import main

main()
