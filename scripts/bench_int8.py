"""The accuracy cost of the reduced-precision runtimes on real tasks (csrv2.experiments.bench.int8_cost has the protocol).

python scripts/bench_int8.py --help
"""

from csrv2.experiments.bench.int8_cost import main

main()
