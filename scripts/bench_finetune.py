"""Finetuning throughput: python scripts/bench_finetune.py --backbone all-mpnet-base-v2 (csrv2.experiments.finetune_speed)."""

from csrv2.experiments.finetune_speed import main

if __name__ == "__main__":
    main()
