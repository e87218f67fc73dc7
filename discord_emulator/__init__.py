"""A local Discord: REST and gateway on 127.0.0.1 that unmodified discord.py connects to.
The tests and the playground (playground/) both run the bot against it."""
