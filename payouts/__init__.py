"""The kernel: what a payout *is*. Payload models, statuses and their transitions, money, phone numbers,
verdicts, rejection and escalation reasons, payout events and names, each declared once. It imports no
other room of ours; the plumbing processes share lives in `runtime/`."""
