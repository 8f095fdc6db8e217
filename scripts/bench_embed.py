"""Embedding speed on the CPU, torch against onnxruntime (fp32 and int8) on the same real texts (csrv2.experiments.bench.embed_speed).

OMP_NUM_THREADS=1 python scripts/bench_embed.py --texts 2000 --threads 1 --json
"""

from csrv2.experiments.bench.embed_speed import main

if __name__ == "__main__":
    main()
