"""One way to derive seeds: a run's --seed mixed with where a draw happens (an epoch, a step, an image).

Every random draw in this repo comes from a seed made by `mix`, so that a run repeats exactly and a
resumed run draws what an uninterrupted one draws.
"""

SEEDS = 2**64  # torch.manual_seed and torch.Generator take seeds in [0, 2**64)


def mix(*parts: int) -> int:
    """A seed in [0, 2**64) from any ints (negative or huge --seed values too), folded left to right:
    mix(a) = a mod 2**64, mix(a, b) = (a * 100_003 + b) mod 2**64, and so on. Different parts give
    different seeds for the small numbers that epochs, steps and image indices are."""
    seed = 0
    for part in parts:
        seed = (seed * 100_003 + part) % SEEDS
    return seed
