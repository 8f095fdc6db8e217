"""The paper grid scored under MTEB's own protocol beside csrv2's (csrv2.experiments.paper.mteb_protocol has it).

python scripts/mteb_protocol.py --help
"""

from csrv2.experiments.paper.mteb_protocol import main

main()
