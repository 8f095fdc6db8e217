"""The accuracy cost of backbone.runtime onnx-int8 on catalog tasks, torch's embeddings against int8's
(csrv2.experiments.int8_cost).

OMP_NUM_THREADS=1 python scripts/bench_int8.py --threads 1 --run runs/quickstart --json
"""

from csrv2.experiments.int8_cost import main

if __name__ == "__main__":
    main()
