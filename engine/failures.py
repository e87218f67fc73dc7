"""Why a job failed, in words for the person who asked for it. Never a trace or a key."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    "submit_outcome_unknown": (
        "WaveSpeed did not confirm that it received the job, and the job could not be found "
        "in WaveSpeed's list of tasks, so it was stopped and your credits were refunded. "
        "Please try again."
    ),
    "task_conflict": (
        "WaveSpeed's reply came too late: the bot had already matched its task to another "
        "job. Your credits were refunded and the operator will look into it."
    ),
    "rejected_input": "WaveSpeed refused the request: {detail}",
    "service_auth": (
        "The bot's WaveSpeed account is not working right now. The operator can see this; "
        "please try again later."
    ),
    "service_unavailable": (
        "WaveSpeed stayed busy or unreachable after several tries. Please try again later."
    ),
    "submit_refused": "WaveSpeed refused the job: {detail}",
    "generation_failed": "WaveSpeed could not generate the clip: {detail}",
    "timeout": (
        "The clip was not ready within {detail} minutes, so the job was stopped and refunded. "
        "If WaveSpeed still finishes it within 7 days, it will be posted here, free."
    ),
    "task_missing": "WaveSpeed lost track of the job.",
    "output_missing": "The finished clip could no longer be downloaded from WaveSpeed.",
    "download_failed": "The finished clip could not be downloaded from WaveSpeed.",
    "output_refused": (
        "WaveSpeed named a download address for the clip that the bot does not fetch from "
        "(not https, or a private address), so it was not downloaded."
    ),
    "delivery_failed": "The finished clip could not be posted: {detail}",
    "references_expired": (
        "WaveSpeed keeps reference files for 7 days, and this job's were gone before it could "
        "be sent, so it was not started and your credits were refunded. Run /ref2video again "
        "with the files."
    ),
    "cancelled": "The job was cancelled.",
    "withheld": "The clip was not posted: {detail}",
}


def describe(code: str, detail: str | None = None) -> str:
    template = MESSAGES.get(code, "The job failed.")
    return template.format(detail=(detail or "no reason given").strip()[:300])
