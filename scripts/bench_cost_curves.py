"""Cost curves from 10k to 10M rows (csrv2.experiments.cost_curves).

OMP_NUM_THREADS=1 python scripts/bench_cost_curves.py --help
"""

from csrv2.experiments.cost_curves import main

if __name__ == "__main__":
    main()
