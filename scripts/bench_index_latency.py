"""SparseIndex single-query latency against the memory-bandwidth bound (csrv2.experiments.index_latency).

OMP_NUM_THREADS=1 python scripts/bench_index_latency.py --help
"""

from csrv2.experiments.index_latency import main

if __name__ == "__main__":
    main()
