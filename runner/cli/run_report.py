"""What `recipe run` says about the training it started: the line before it starts, and
how it ended (the run's summary line on the machine that owns the run, `machine N of M:
done` on the others; a run that did not succeed ends in RunStopped or UserError)."""

from __future__ import annotations

from runner.errors import UserError


class RunStopped(UserError):
    """The run ended early: diverged or interrupted (exit code 3 or 130)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def this_machine(settings) -> str:
    """`machine N of M`, as the other machines of a multi-machine run call themselves."""
    return f"machine {settings.machine_rank} of {settings.num_machines}"


def starting_line(home, settings, argv: list[str]) -> str:
    """Where the training starts, and the launch command it runs."""
    from runner.expand.engines import owns_run
    from runner.expand.launch import shell_command

    if owns_run(settings):
        return f"training in {home.path}\n$ {shell_command(argv)}"
    return f"{this_machine(settings)}: training; $ {shell_command(argv)}"


def report(home, settings, code: int, interrupts: int, session: str) -> str:
    """How the training on this machine ended: the run's summary (`finish`) on the
    machine that owns the run; on another, that it is done and where the record is."""
    from runner.expand.engines import owns_run

    if owns_run(settings):
        return finish(home, code, interrupts, session)
    if code != 0:
        raise UserError(
            f"{this_machine(settings)}: training failed (exit code {code}); see the output "
            f"above and the run's record on machine 0 ({settings.output_dir})"
        )
    return (
        f"{this_machine(settings)}: done; machine 0 writes the run's record and model in "
        f"{settings.output_dir}"
    )


def finish(run_dir, code: int, interrupts: int, session: str) -> str:
    """The summary of a run that succeeded; RunStopped / UserError for one that did not."""
    from runner.run.directory import now
    from runner.run.record import resume_command, stop_record
    from runner.run.session import close_session, is_current, last_logged_step
    from runner.run.summary import summary_line

    if not is_current(run_dir, session):
        raise UserError(
            f"{run_dir.path}: another session of this run has started (see run.json's "
            "sessions); this one's training processes stopped without writing"
        )
    record = run_dir.read_run()
    status = record.get("status")
    if status == "succeeded" and code == 0:
        return summary_line(run_dir.update_run(exit_code=0))
    if status == "running" and interrupts > 1:
        why, step = "a second interrupt stopped it at once", last_logged_step(run_dir)
        record = close_session(
            run_dir, session, "interrupted", why, step, exit_code=code, finished_at=now(),
            stopped=stop_record(run_dir, step, why),
        )  # fmt: skip
        status = "interrupted"
    if status == "interrupted":
        stopped = record.get("stopped") or {}
        saved = stopped.get("last_good_checkpoint") or "no checkpoint yet"
        raise RunStopped(
            f"{record.get('name')} interrupted at step {stopped.get('step', '?')} ({saved}); "
            f"continue it with: {resume_command(record)}",
            130,
        )
    if status == "diverged":
        stopped = record.get("stopped") or {}
        causes = "; ".join(stopped.get("likely_causes") or [])
        good = stopped.get("last_good_checkpoint") or "none was saved"
        raise RunStopped(
            f"{record.get('name')} diverged at step {stopped.get('step')}: {stopped.get('seen')}. "
            f"Nothing after that was saved; the last good checkpoint is {good}. Likely: {causes}",
            3,
        )
    reason = record.get("error") or f"exit code {code}; see the output above"
    if status == "failed":
        run_dir.update_run(exit_code=code)  # the training process recorded why
    else:
        first = str(reason).splitlines()[0]
        close_session(run_dir, session, "failed", first, None, exit_code=code, finished_at=now())
    raise UserError(f"training failed: {reason}\nRun directory: {run_dir.path}")
