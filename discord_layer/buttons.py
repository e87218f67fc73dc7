"""Buttons on job messages, and the views that carry them, kept working across restarts:
what they act on (a job, an offer) lives in the custom_id, and discord.py's dynamic items
route any click whose custom_id matches, whichever process sent the message.

- Cancel (on a queued job's status message): the owner or a moderator; refunded.
- Re-roll (on a result): the owner; same settings, new seed, a new charged job after a
  confirmation that shows the current price.
- Use as reference (on a result): the owner; the clip becomes `video` of a new job whose
  prompt they type in a form (`reference_form`).
- Confirm / Not now (on a price question): the member asked. The offer is in the database
  (storage.offers), and the job store starts at most one job per offer.

A leaf of the Discord layer: a button only knows its custom_id and hands the click to the
client's `ButtonActions` (discord_layer.job_actions), so the modules that post these views
(status messages, the job starter, the delivery) import nothing that imports them back.
Errors in any button go through discord_layer.errors like a slash command's, so the member
is always answered.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Protocol, runtime_checkable

import discord

from discord_layer.errors import report_error

CONFIRM_SECONDS = 120.0
MODAL_PROMPT_MAX = 4000          # Discord's limit for a text input
RESULT_ID = "r2v:reroll:{job_id}"      # on every delivered clip: how find_delivery knows it
WITHHELD_ID = "r2v:withheld:{job_id}"  # on the notice of a clip withheld but charged
REFERENCE_FORM = re.compile(r"r2v:reference:(?P<job>\d+):(?P<token>[A-Za-z0-9_-]{1,40})")


class ButtonActions(Protocol):
    """What a press of each button does (discord_layer.job_actions.JobActions)."""

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None: ...

    async def confirm(self, interaction: discord.Interaction, token: str) -> None: ...

    async def decline(self, interaction: discord.Interaction, token: str) -> None: ...

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None: ...

    async def reuse(self, interaction: discord.Interaction, job_id: int) -> None: ...


@runtime_checkable
class ButtonHost(Protocol):
    """A client whose buttons act: bot.Ref2VideoBot."""

    @property
    def button_actions(self) -> ButtonActions: ...


def actions_of(client: discord.Client) -> ButtonActions:
    if not isinstance(client, ButtonHost):
        raise RuntimeError("the client has no button actions: build it with bot.Ref2VideoBot")
    return client.button_actions


class _Reporting:
    """Mixed into each persistent button: its errors reach the member like a command's
    (discord.py only logs errors raised in dynamic items)."""

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.run(interaction, actions_of(interaction.client))
        except Exception as exc:  # noqa: BLE001 - report_error answers and logs
            await report_error(interaction, exc, what=f"button {type(self).__name__}")

    async def run(self, interaction: discord.Interaction, actions: ButtonActions) -> None:
        raise NotImplementedError


_Dynamic = discord.ui.DynamicItem[discord.ui.Button[Any]]


class CancelButton(_Reporting, _Dynamic, template=r"r2v:cancel:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger,
                                           custom_id=f"r2v:cancel:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> CancelButton:
        return cls(int(match["job"]))

    async def run(self, interaction: discord.Interaction, actions: ButtonActions) -> None:
        await actions.cancel(interaction, self.job_id)


class ConfirmButton(_Reporting, _Dynamic, template=r"r2v:confirm:(?P<token>[A-Za-z0-9_-]{1,40})"):
    def __init__(self, token: str) -> None:
        super().__init__(discord.ui.Button(label="Confirm", style=discord.ButtonStyle.success,
                                           custom_id=f"r2v:confirm:{token}"))
        self.token = token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> ConfirmButton:
        return cls(match["token"])

    async def run(self, interaction: discord.Interaction, actions: ButtonActions) -> None:
        await actions.confirm(interaction, self.token)


class DeclineButton(_Reporting, _Dynamic, template=r"r2v:decline:(?P<token>[A-Za-z0-9_-]{1,40})"):
    def __init__(self, token: str) -> None:
        super().__init__(discord.ui.Button(label="Not now", style=discord.ButtonStyle.secondary,
                                           custom_id=f"r2v:decline:{token}"))
        self.token = token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> DeclineButton:
        return cls(match["token"])

    async def run(self, interaction: discord.Interaction, actions: ButtonActions) -> None:
        await actions.decline(interaction, self.token)


class RerollButton(_Reporting, _Dynamic, template=r"r2v:reroll:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Re-roll", style=discord.ButtonStyle.primary,
                                           custom_id=RESULT_ID.format(job_id=job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> RerollButton:
        return cls(int(match["job"]))

    async def run(self, interaction: discord.Interaction, actions: ButtonActions) -> None:
        await actions.reroll(interaction, self.job_id)


class ReuseButton(_Reporting, _Dynamic, template=r"r2v:reuse:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Use as reference",
                                           style=discord.ButtonStyle.secondary,
                                           custom_id=f"r2v:reuse:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> ReuseButton:
        return cls(int(match["job"]))

    async def run(self, interaction: discord.Interaction, actions: ButtonActions) -> None:
        await actions.reuse(interaction, self.job_id)


DYNAMIC_ITEMS = (CancelButton, RerollButton, ReuseButton, ConfirmButton, DeclineButton)


def reference_form(job_id: int, max_chars: int) -> discord.ui.Modal:
    """The Use as reference form. Only what Discord shows: its submission is handled by
    `JobActions.on_reference_form` from the custom_id alone (REFERENCE_FORM), so it also
    works after a restart, and the token in it is the start key, so submitting it twice
    starts one job."""
    form = discord.ui.Modal(title="Use this clip as a reference", timeout=None,
                            custom_id=f"r2v:reference:{job_id}:{secrets.token_urlsafe(12)}")
    form.add_item(discord.ui.TextInput(
        label="Prompt for the new clip", custom_id="prompt", style=discord.TextStyle.paragraph,
        max_length=min(max_chars, MODAL_PROMPT_MAX)))
    form.stop()  # never stored in discord.py's modal store: on_reference_form answers it
    return form


def queued_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(ReuseButton(job_id))
    return view


def withheld_view(job_id: int) -> discord.ui.View:
    """Re-roll, and a disabled label that marks the notice as this job's (find_delivery)."""
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(discord.ui.Button(label="Clip withheld", disabled=True,
                                    style=discord.ButtonStyle.secondary,
                                    custom_id=WITHHELD_ID.format(job_id=job_id)))
    return view


def confirm_view(token: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ConfirmButton(token))
    view.add_item(DeclineButton(token))
    return view
