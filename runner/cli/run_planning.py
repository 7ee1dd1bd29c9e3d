"""`recipe run --dry-run` and `--print-launch`: what a run would start, on any machine
(GPU or not); nothing is written and nothing starts."""

from __future__ import annotations

from runner.recipe.yaml_dialect import dump_yaml


def dry_run_text(settings, placement, extra, resume: bool, cap_memory: bool) -> str:
    """`--dry-run`: the launch command and the resolved recipe."""
    from runner.cli.run_resume import resume_point_of
    from runner.expand.launch import launch_argv, shell_command

    point = resume_point_of(settings.output_dir) if resume else None
    argv = launch_argv(settings, placement, extra=extra, resume=point, cap_memory=cap_memory)
    return f"# launch command\n{shell_command(argv)}\n# resolved recipe\n" + dump_yaml(
        settings.resolved
    ).rstrip("\n")


def per_machine_commands(
    recipe, overrides, settings, placement, extra, *, cap_memory: bool = False, cpu: bool = False
) -> str:
    """What to start on each machine: its `recipe run`, and the launch it executes."""
    from runner.expand.launch import launch_argv, shell_command
    from runner.recipe.settings import Settings

    lines = []
    sets = [part for value in overrides if not value.startswith("launch.machine_rank=")
            for part in ("--set", value)]  # fmt: skip
    for rank in range(settings.num_machines):
        resolved = dict(settings.resolved)
        resolved["launch"] = {**settings.launch, "machine_rank": rank}
        node = Settings(resolved, settings.remote_code_allowed)
        command = ["recipe", "run", recipe, *sets]
        if settings.num_machines > 1:
            command += ["--set", f"launch.machine_rank={rank}"]
        if cpu:
            command.append("--cpu")
        if cap_memory:
            command.append("--cap-memory")
        if settings.trust_remote_code:
            command.append("--trust-remote-code")
        node_argv = launch_argv(node, placement, extra=extra, cap_memory=cap_memory)
        lines.append(f"# machine {rank} of {settings.num_machines}:")
        lines.append(shell_command(command + (["--", *extra] if extra else [])))
        lines.append(f"#   which runs: {shell_command(node_argv)}")
    return "\n".join(lines)
