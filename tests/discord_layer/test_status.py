"""The status message of a job, without Discord: every state renders, within Discord's
embed limits, and says what happens to the member's credits."""

from __future__ import annotations

import dataclasses

import pytest

from discord_layer.status import COLOURS, state_line, status_embed
from money.prices import PriceTable
from storage.jobs import JobState
from tests.discord_layer.sample import REQUEST, job

PRICES = PriceTable()


@pytest.mark.parametrize("state", list(JobState))
def test_every_state_renders_within_discords_limits(state: JobState) -> None:
    embed = status_embed(job(state), 3, PRICES)
    assert state in COLOURS
    assert embed.title == "Job #7"
    assert embed.description and len(embed.description) <= 4096
    assert len(embed) <= 6000 and len(embed.fields) <= 25
    assert all(len(f.value or "") <= 1024 for f in embed.fields)
    balance_shown = any(f.name == "Balance after this job" for f in embed.fields)
    assert balance_shown is not state.is_terminal  # a finished job's balance is stale


def test_what_each_state_says_about_the_credits() -> None:
    assert state_line(job(JobState.QUEUED), 2, PRICES) == "⏳ Queued, position 2"
    checking = state_line(job(JobState.CHECKING), None, PRICES)
    assert checking.startswith("🔎 Checking with WaveSpeed") and "100 credits" in checking
    assert "held" in checking and "refunded if it is not there" in checking
    assert state_line(job(JobState.DELIVERED), None, PRICES).startswith("✅ Delivered")
    failed = job(JobState.FAILED, failure_detail="WaveSpeed lost track of the job.")
    assert state_line(failed, None, PRICES).endswith("lost track of the job.; 100 credits "
                                                     "($1.00) refunded")
    forfeited = dataclasses.replace(failed, refund_forfeited=True)
    assert state_line(forfeited, None, PRICES).endswith("not refunded")
    withheld = job(JobState.DELIVERED, delivery={"withheld": "flagged NSFW"})
    assert "not posted here" in state_line(withheld, None, PRICES)


def test_a_hostile_prompt_stays_inside_its_field() -> None:
    long = dataclasses.replace(REQUEST, prompt="`" * 3000 + "\n" * 3000)
    embed = status_embed(job(JobState.RUNNING, request=long), None, PRICES)
    [prompt] = [f for f in embed.fields if f.name == "Prompt"]
    assert prompt.value is not None and len(prompt.value) <= 1024
