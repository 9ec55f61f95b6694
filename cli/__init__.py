"""``ave``: the command line of the AI video editor backend (see ``cli.main``)."""
