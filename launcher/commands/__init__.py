"""Subcommands of `rlaunch`, one module per group, loaded lazily by launcher.cli."""
