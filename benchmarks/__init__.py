"""Benchmarks: the speed a user feels, measured against real services on loopback.

python -m benchmarks.run [--scale S] [--repeat N] [--datasets N] [--workdir DIR] [--peer caterva2]

data.py       makes the datasets once per scale (cached in the work dir)
harness.py    child processes (broker, publishers, subscriber, static server), memory
static.py     the baseline: a plain static file server (starlette FileResponse)
result.py     a scenario's samples and target; how one sample is timed
scenarios.py  what is timed, and how each result is verified
floors.py     plain HTTP moving the same bytes: what the ratios are measured against
schedule.py   when samples are taken: alone, or caterva's and Caterva2's alternately
peer_caterva2.py         Caterva2 side by side: its own venv, services, scenario drivers
peer_caterva2_driver.py  its Python-API half, run by Caterva2's interpreter
report.py     the table of medians and ratios, and the JSON file
run.py        the command: data -> services -> scenarios -> report
bigroot.py    python -m benchmarks.bigroot [--datasets N]: a publisher of N tiny datasets
"""
