"""The runtime plumbing every process shares: settings, telemetry and metrics, logs, the Temporal client
and its profile, the payload codec and failure converter, request signing, readiness, and the one path
that starts a payout. Just above the kernel (`payouts/`): it imports the kernel and nothing else of ours."""
