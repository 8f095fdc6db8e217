"""Random training batches from a cold memory-mapped file: reads through the map against take_rows
(csrv2.experiments.bench.row_reads has the protocol). The table goes to stdout, the trainer's progress to stderr.

    python scripts/bench_row_reads.py --rows 3000000 --folder /tmp/csrv2-rows
"""

from csrv2.experiments.bench.row_reads import main

main()
