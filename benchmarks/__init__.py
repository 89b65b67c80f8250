"""Benchmarks: the speed a user feels, measured against real services on loopback.

python -m benchmarks.run [--scale S] [--repeat N] [--datasets N] [--workdir DIR]

data.py       makes the datasets once per scale (cached in the work dir)
harness.py    child processes (broker, publishers, subscriber, static server), memory
static.py     the baseline: a plain static file server (starlette FileResponse)
scenarios.py  what is timed, and how each result is verified
report.py     the table of medians and ratios, and the JSON file
run.py        the command: data -> services -> scenarios -> report
bigroot.py    python -m benchmarks.bigroot [--datasets N]: a publisher of N tiny datasets
"""
