"""Frozen workflow code kept for the payouts still running under it (replay of their histories).

`ReceiptPayoutWorkflow` (the first payout workflow type) is registered beside its successor
`ReceiptPayout` until no execution of it is open (`payouts ops` / the Web UI: query
`WorkflowType="ReceiptPayoutWorkflow" AND ExecutionStatus="Running"`), then this package is deleted.
Nothing here changes: a change to the commands it issues would break those payouts' replay.
It is the one place in workflows/ allowed to import activities/ and portmone/ (its frozen calls).
"""
