"""The playground: the bot in simulate mode against the local Discord (discord_emulator/),
shown and driven from a web page that looks like a Discord channel. Start it with
scripts/playground; `python -m playground --help` lists the options.

- world.py: the server, its channels and members, with ids kept across runs
- bot_process.py: bot.py as a child process, configured by its environment
- commands.py: the synced slash commands as forms, and form values as emulator options
- views.py: what one member sees (messages, ephemeral ones only their own, modals, credits)
- credits.py: balances read from the bot's database, read-only
- uploads.py: members' uploads kept in the emulator for the bot, within a byte budget
- server.py: the aiohttp app: the page, its JSON API and the live websocket
- app.py: all of it started and stopped in order (the page's port first, then the data
  directory, locked against a second playground)
"""
