"""`recipe cache ls` and `recipe cache clear`: the prepared data kept between runs
(runner.data.cache)."""

from __future__ import annotations

import click


@click.group()
def cache() -> None:
    """The prepared data kept between runs (tokenized, by content)."""


@cache.command("ls")
def list_entries() -> None:
    """Each prepared dataset: key, recipe, rows, size, when last used."""
    from runner.data.cache import age, cache_root, entries, max_bytes

    found = entries()
    total = 0
    for entry in reversed(found):  # most recently used first
        record, size = entry.record(), entry.size()
        total += size
        rows = record.get("rows", {})
        click.echo(
            f"{entry.key[:12]}  {record.get('recipe', '?'):<24} {rows.get('train', 0):>8} train "
            f"{rows.get('eval', 0):>7} eval  {size / 1024**2:8.1f} MiB  {age(entry.last_used)}"
        )
    click.echo(
        f"{len(found)} prepared dataset(s), {total / 1024**2:.1f} MiB of "
        f"{max_bytes() / 1024**3:g} GiB in {cache_root()}",
        err=True,
    )


@cache.command("clear")
@click.argument("key", required=False)
@click.option("--all", "everything", is_flag=True, help="Remove every prepared dataset.")
def clear_entries(key: str | None, everything: bool) -> None:
    """Remove the prepared dataset KEY (a prefix is enough), or --all of them."""
    from runner.data.cache import clear
    from runner.errors import UserError

    if (key is None) == (not everything):
        raise click.UsageError("give a KEY (see `recipe cache ls`) or --all")
    removed = clear(None if everything else key)
    if key and not removed:
        raise UserError(f"no prepared dataset with key {key} (see `recipe cache ls`)")
    click.echo(f"removed {len(removed)} prepared dataset(s)")
