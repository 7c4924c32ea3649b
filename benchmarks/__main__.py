"""``python -m benchmarks`` (from the checkout's root): :func:`.cli.main`."""
from .cli import main

main()
