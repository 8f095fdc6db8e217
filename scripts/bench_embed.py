"""Embedding speed on the CPU, every backbone.runtime against torch on the same real texts (csrv2.experiments.bench.embed_speed).

python scripts/bench_embed.py --texts 700 --threads 1 2 --batch-sizes 32 128 --rounds 3 --out embed_speed.json
"""

from csrv2.experiments.bench.embed_speed import main

if __name__ == "__main__":
    main()
