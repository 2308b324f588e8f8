"""One thin module per ``paintguard`` subcommand (``cli.py`` dispatches); each parses, calls the library, prints.

Only commands import commands. ``paintguard protect`` lives on the inference side, in ``generator/protect_cli.py``.
"""
