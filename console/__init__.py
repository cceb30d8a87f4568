"""The top floor: what a person runs (the `payouts` command line, `payouts dev`, the operator's console).

Nothing in the service imports this package.
"""
