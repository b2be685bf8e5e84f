"""A release across machines: the job plan derived from the flow (release/steps.py), jobs that stage
their outputs on branches of the destination repos, and `finish`, which promotes them atomically.

    jobs.plan_jobs(ctx) -> JobPlan            `release plan NAME --matrix [--json]`
    run.run_job(ctx, job_id) -> JobSummary    `release publish NAME --job ID`
    finish.run_finish(ctx) -> PublishSummary  `release publish NAME --finish`

Weights move only through the Hub: a job fetches its inputs from the staging branches of the jobs it
needs (checking size and sha256 against their records), builds, and commits its outputs plus a record
to `release-<name>-<job>` branches. Main of every destination changes only at `finish`.
"""
