"""Receipt payouts: what the rooms share (settings, payload models, money, phone crypto, CLI)."""
