"""The console room: `payouts dev`, its state file and demo, and what every command says when a part is down."""
