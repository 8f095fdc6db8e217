"""Where a general head's latent usage goes on another fold's texts (csrv2.experiments.usage_offset).

python scripts/probe_usage.py --config configs/research/live_latents_usage.yaml \
    --head runs/live-latents/heads/released-center/A/seed0 --train-fold A --other-fold B
"""

from csrv2.experiments.usage_offset import main

if __name__ == "__main__":
    main()
