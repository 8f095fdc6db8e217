"""Peak RSS of embeddings on disk → codes → SparseIndex, naive against chunked (csrv2.experiments.index_memory).

OMP_NUM_THREADS=1 python scripts/bench_index_memory.py --help
"""

from csrv2.experiments.index_memory import main

if __name__ == "__main__":
    main()
