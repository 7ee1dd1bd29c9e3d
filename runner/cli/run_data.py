"""The data step of `recipe run`: the recipe's data prepared once for every training
process of this machine (runner.data.store: from the cache, or every row read, checked,
rendered, tokenized and fitted by runner.data.rows), said on the screen, and kept in the
run when it was prepared outside the cache (--no-cache)."""

from __future__ import annotations

from pathlib import Path

import click


def data_for_run(settings, no_cache: bool):
    """The data prepared once for every training process: from the cache, or every row
    read and checked (bad rows listed by source and line), rendered and tokenized. Every
    machine of a run prepares it the same way, and says the same rows."""
    import tempfile

    from runner.data.store import stored_data
    from runner.data.truncation import rows_line

    scratch = Path(tempfile.mkdtemp(prefix="recipe-prepared-")) / "prepared"
    prepared = stored_data(settings, use_cache=not no_cache, into=scratch)
    if prepared.hit:
        click.echo(f"data cache: hit (key {prepared.record['key'][:12]})", err=True)
    else:
        where = "cache" if prepared.record.get("key") else "run directory"
        click.echo(f"data: prepared in {prepared.seconds:.1f} s (into the {where})", err=True)
    click.echo(rows_line(prepared.rows), err=True)  # every row accounted for
    if prepared.rows["skipped"]:
        click.echo(f"first bad row skipped: {prepared.first_bad_row}", err=True)
    return prepared


def keep_data(prepared, home: Path):
    """Data prepared outside the cache moves into the launch home it belongs to."""
    import shutil

    from runner.data.store import Prepared

    if prepared.record.get("key"):
        return prepared
    target = home / "prepared"
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(prepared.path), target)
    return Prepared(target, prepared.record, prepared.hit, prepared.seconds)
