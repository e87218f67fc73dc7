"""What is decided before anything is charged: a request's files and text, the server's
rules, its blocklist, and the per-server checks in order (the Gatekeeper). The job engine
runs what was admitted and imports nothing from here."""
