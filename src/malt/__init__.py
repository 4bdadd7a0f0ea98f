"""malt: multi-agent LLM training (generator -> verifier -> refiner) after Motwani et al. 2024."""

__version__ = "0.1.0"
