"""CLI commands beyond the core ones, one module each with ``add_parser(subparsers)``.

A module must import nothing heavy at module level: the parser is built on every call.
"""
