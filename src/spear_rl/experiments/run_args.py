"""Command-line overrides that benchmark scripts share when they time `spear train` runs."""

# Dr.BoT's response and group filters off: every step updates on its whole batch, so step times
# compare equal work whatever the policy happened to write.
EVERY_SAMPLE_TRAINS = (
    "--algo.filter_incomplete=false",
    "--algo.filter_overlong=false",
    "--algo.filter_unreadable=false",
    "--algo.group_filter_ratio=1.0",
)
