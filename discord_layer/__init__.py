"""The Discord side of the bot: everything here may import discord.py; the core may not."""
