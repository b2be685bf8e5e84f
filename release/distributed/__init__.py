"""A release across machines: the job plan derived from the flow (release/steps.py), jobs that stage
their units' outputs on branches of the destination repos, and `finish`, which promotes them atomically.

    jobs.plan_jobs(ctx) -> JobPlan            `release plan NAME --matrix [--json]`
    run.run_job(ctx, job_id) -> JobSummary    `release publish NAME --job ID`
    finish.run_finish(ctx) -> PublishSummary  `release publish NAME --finish`
    clean.clean_staging(release, pub)         `release clean NAME --staging`
    canary.run_canary(...)                    `release canary`

Weights move only through the Hub: a job fetches its inputs from the staging branches of the units it
needs (checking size and sha256 against their records), builds, and commits each unit's outputs plus a
record to `release-<name>-<unit>` branches (keys.py says when a record still holds). Main of every
destination changes only at `finish`.
"""
