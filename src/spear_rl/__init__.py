"""spear-rl: SPEAR (self-imitation with progressive exploration) for agentic RL of LLM agents."""

__version__ = "0.1.0"
