"""A Gaussian-mixture reward-diversity testbed that runs the shared baselines core on CPU."""
