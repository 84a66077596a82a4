from bench.testing import load_hypothesis_profile

load_hypothesis_profile()
