"""The example envs of docs/custom-env.md: a text game and a tool-using task."""
