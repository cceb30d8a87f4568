"""Worker processes: build the client and dependencies, register workflows and activities, stop gracefully."""
