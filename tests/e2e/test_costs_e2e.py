"""What each option costs at WaveSpeed, next to what it sells for (issue 12): the margin in
/admin status, the below-cost warning in audit channels, and prices that follow WaveSpeed's
with a markup. Quotes come from the fake's pricing endpoint over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from discord_emulator.emulator import Channel
from money.prices import PriceTable
from tests.e2e.scene import Scene, custom_ids, job_done, open_scene
from tests.fakes.wavespeed import Fault

CONTRACT = {("720p", 5): 1.00, ("720p", 10): 1.50, ("1080p", 5): 1.50, ("1080p", 10): 2.25}


def quoting(table: dict[tuple[str, int], float]) -> Any:
    def quote(inputs: dict[str, Any]) -> float:
        size = str(inputs.get("size", "1280*720"))
        resolution = "1080p" if "1080" in size.split("*") else "720p"
        return table[(resolution, int(inputs.get("duration", 5)))]
    return quote


def audit_channel(s: Scene) -> Channel:
    return s.guild.add_text_channel("audit")


async def status_field(s: Scene) -> str:
    rec = await s.emu.invoke("admin", subcommand="status", user=s.admin, channel=s.channel)
    shown = (await rec.wait_response()).embeds[0]
    [field] = [f["value"] for f in shown["fields"] if "cost per clip" in f["name"]]
    return str(field)


async def test_a_price_below_wavespeeds_cost_is_warned_once_and_shown(tmp_path: Path) -> None:
    async with open_scene(tmp_path) as s:
        audit = audit_channel(s)
        await s.world.services.guild_settings.set_audit_channel(s.guild.id, audit.id,
                                                                actor=s.admin.id)
        watch = s.world.services.costs
        s.wavespeed.quote_usd = quoting({**CONTRACT, ("1080p", 10): 2.60})
        await watch.check()
        await watch.check()  # the same news is not posted again

        def warnings() -> list[str]:
            return [m.content for m in s.emu.channel_messages(audit.id)
                    if "Below cost" in m.content]

        await s.emu.wait_for(lambda: warnings(), within=5.0)
        assert len(warnings()) == 1
        assert "1080p 10 s sells for $2.25 (225 credits) and costs $2.60" in warnings()[0]
        field = await status_field(s)
        assert ("1080p 10 s: 225 credits ($2.25) · WaveSpeed $2.60 · margin -$0.35 (-13%) "
                "⚠️ below cost") in field, field
        assert "720p 5 s: 100 credits ($1.00) · WaveSpeed $1.00 · margin +$0.00 (+0%)" in field
        # WaveSpeed lowers its price again: no warning stands, and a later rise warns anew.
        s.wavespeed.quote_usd = quoting(CONTRACT)
        await watch.check()
        assert "below cost" not in await status_field(s)
        s.wavespeed.quote_usd = quoting({**CONTRACT, ("720p", 5): 1.20})
        await watch.check()
        await s.emu.wait_for(lambda: len(warnings()) == 2, within=5.0)


async def test_prices_follow_wavespeeds_with_the_markup_and_jobs_pay_them(
        tmp_path: Path) -> None:
    async with open_scene(tmp_path, price_follow_wavespeed=True,
                          price_markup_percent=20.0) as s:
        watch = s.world.services.costs
        await s.emu.wait_for(lambda: watch.last is not None, within=5.0)  # read at start-up
        prices = s.world.services.settings.prices
        assert [prices.credits_of(r, d) for r, d in CONTRACT] == [120, 180, 180, 270]
        await s.grant(s.alice, 500)
        reply = await s.generate(s.alice)
        assert "120 credits ($1.20) reserved" in reply.content, reply.content
        await job_done(s, 1)
        assert await s.world.balance(s.guild.id, s.alice.id) == (380, 0)
        assert "follow WaveSpeed's +20%" in await status_field(s)


async def test_an_unreadable_price_keeps_the_last_figures_and_says_so(tmp_path: Path) -> None:
    async with open_scene(tmp_path) as s:
        watch = s.world.services.costs
        await watch.check()
        good = s.wavespeed.quote_usd
        s.wavespeed.quote_usd = lambda inputs: 1e307  # not a price: a broken reply
        reading = await watch.check()
        assert reading.error == "MalformedResponseError" and reading.costs[("720p", 5)] == 1.0
        s.wavespeed.quote_usd = good
        s.wavespeed.inject("pricing", *[Fault.status(503)] * 20)
        await watch.check()
        field = await status_field(s)
        assert "last check failed (ServerError)" in field, field
        assert "720p 5 s: 100 credits" in field


async def test_an_implausible_quote_is_not_followed(tmp_path: Path) -> None:
    # A glitch quoting $0 (or a fraction of today's price) must not make clips nearly free
    # while the operator still pays WaveSpeed's real price.
    async with open_scene(tmp_path, price_follow_wavespeed=True,
                          price_markup_percent=20.0) as s:
        audit = audit_channel(s)
        await s.world.services.guild_settings.set_audit_channel(s.guild.id, audit.id,
                                                                actor=s.admin.id)
        watch = s.world.services.costs
        await s.emu.wait_for(lambda: watch.last is not None, within=5.0)
        prices = s.world.services.settings.prices
        assert prices.credits_of("720p", 5) == 120
        s.wavespeed.quote_usd = quoting({**CONTRACT, ("720p", 5): 0.0, ("1080p", 10): 2.50})
        await watch.check()
        await watch.check()  # said once
        assert prices.credits_of("720p", 5) == 120            # left alone
        assert prices.credits_of("1080p", 10) == 300          # a plausible rise is followed

        def doubts() -> list[str]:
            return [m.content for m in s.emu.channel_messages(audit.id)
                    if "far from the configured" in m.content]

        await s.emu.wait_for(lambda: doubts(), within=5.0)
        assert len(doubts()) == 1 and "720p 5 s $0.00" in doubts()[0]
        # Cents read as dollars for a day: nothing follows, and the day after is normal.
        s.wavespeed.quote_usd = quoting({o: usd * 100 for o, usd in CONTRACT.items()})
        await watch.check()
        assert [prices.credits_of(r, d) for r, d in CONTRACT] == [120, 180, 180, 300]
        s.wavespeed.quote_usd = quoting(CONTRACT)
        await watch.check()
        assert [prices.credits_of(r, d) for r, d in CONTRACT] == [120, 180, 180, 270]
        await s.emu.wait_for(lambda: len(doubts()) == 2, within=5.0)


async def test_a_confirm_reserves_the_price_confirmed_even_if_prices_change_meanwhile(
        tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        await s.grant(s.alice, 500)
        await s.world.services.guild_settings.set_confirm_cost(s.guild.id, True,
                                                               actor=s.admin.id)
        question = await s.generate(s.alice)
        assert "costs **100 credits ($1.00)**" in question.content
        gate = s.world.services.gatekeeper
        real = gate.admitting

        @contextlib.asynccontextmanager
        async def admitting(who: Any, request: Any, **options: Any) -> AsyncIterator[Any]:
            # The daily follow-mode change lands while the press waits for the server's
            # lock, after its price was checked against the offer.
            s.world.services.settings.prices.set_credits({("720p", 5): 300})
            async with real(who, request, **options) as admission:
                yield admission

        gate.admitting = admitting  # type: ignore[method-assign]
        go = await s.emu.click(question, custom_ids(question)[0], user=s.alice)
        reply = (await go.wait_response(within=10.0)).content
        assert "100 credits ($1.00) reserved; you have 400 credits left" in reply, reply
        job = await job_done(s, 1)
        assert job.price == 100
        assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


async def test_follow_mode_judges_quotes_against_the_cost_behind_the_configured_price(
        tmp_path: Path) -> None:
    # PRICE_* already carry a 150% markup (what follow mode would set): WaveSpeed's list
    # prices are the cost behind them, and a 25% rise is followed for every option.
    configured = PriceTable(p720_5s=250, p720_10s=375, p1080_5s=375, p1080_10s=563)
    async with open_scene(tmp_path, price_follow_wavespeed=True, price_markup_percent=150.0,
                          prices=configured) as s:
        watch = s.world.services.costs
        await s.emu.wait_for(lambda: watch.last is not None, within=5.0)
        prices = s.world.services.settings.prices
        assert [prices.credits_of(r, d) for r, d in CONTRACT] == [250, 375, 375, 563]
        s.wavespeed.quote_usd = quoting({o: usd * 1.25 for o, usd in CONTRACT.items()})
        await watch.check()
        assert [prices.credits_of(r, d) for r, d in CONTRACT] == [313, 469, 469, 704]
