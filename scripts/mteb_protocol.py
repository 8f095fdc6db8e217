"""Score a finished grid's heads both ways, csrv2's scoring and MTEB's protocol (csrv2.experiments.mteb_protocol).

python scripts/mteb_protocol.py --config configs/paper/text_small.yaml [key=value ...] [--method csrv2-linear]
"""

from csrv2.experiments.mteb_protocol import main

if __name__ == "__main__":
    main()
