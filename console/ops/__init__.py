"""`payouts ops`: the operator's console for payouts that automation could not settle.

`list` and `export` read the manual queue (Temporal visibility, `PayoutStatus="MANUAL_REVIEW"`,
enriched from the ledger); `show` merges the ledger's records and the workflow's history into one
timeline; `retry`, `mark-paid` and `cancel` send the workflow's updates, whose validators decide.
"""
