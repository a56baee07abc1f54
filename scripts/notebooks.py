"""Headless notebook runs and hygiene checks (`make notebook-test`).

  python scripts/notebooks.py check NOTEBOOK...         outputs must be stripped
  python scripts/notebooks.py run --out DIR NOTEBOOK... execute on the Rust kernel
  python scripts/notebooks.py selftest                 the runner catches failing cells

`run` executes every cell with nbclient on the kernel named in the notebook
(`rust`, registered by `make setup`), from the notebook's own directory, writes
the executed copy to DIR, prints each notebook's wall time, and exits non-zero
when any cell errors. evcxr reports an error returned by `?` in a cell only as
text on stderr, not as a failed cell, so a cell that writes to stderr fails too
(and stops the notebook there; the text can arrive late, so `run` also drains
stderr after the last cell). `check` fails when a committed notebook carries outputs or
execution counts (`strip` removes them), or has a code cell with no text cell before it
(every cell says what it does).
"""

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat


def dirty_cells(nb) -> list[int]:
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]


def unexplained_cells(nb) -> list[int]:
    """Code cells not directly preceded by a markdown cell."""
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (i == 0 or nb.cells[i - 1].cell_type != "markdown")
    ]


def check(paths: list[Path]) -> int:
    bad = 0
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        cells, bare = dirty_cells(nb), unexplained_cells(nb)
        if cells:
            print(f"{p}: code cells {cells} carry outputs; run `python scripts/notebooks.py strip {p}`")
        if bare:
            print(f"{p}: code cells {bare} have no sentence before them saying what they do")
        bad += bool(cells or bare)
    print(f"notebooks: {len(paths) - bad} passed, {bad} failed")
    return 1 if bad else 0


def strip(paths: list[Path]) -> int:
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
        nbformat.write(nb, p)
    return 0


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class CellStderr(Exception):
    """A cell wrote to stderr: with evcxr, an error returned through `?`."""


def stderr_failure(nb, upto: int) -> str | None:
    """The first code cell before index `upto` that wrote to stderr, described."""
    for i, cell in enumerate(nb.cells[:upto]):
        text = "".join(
            o.get("text", "")
            for o in cell.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr"
        )
        if text:
            prev = f" (or in cell {i - 1}, whose `?` error can arrive late)" if i else ""
            return f"cell {i}{prev} wrote to stderr (an error returned by `?`):\n{cell.source}\n---\n{text}"
    return None


# evcxr prints a `?` error on the child's stderr, a pipe apart from the one that
# ends the cell, so the text can reach the kernel after the cell's "idle" message:
# nbclient then drops it as belonging to no running cell, or the kernel tags it
# with the next cell's request. The client below keeps such late stderr on the
# cell it was tagged with, and after the last cell writes a marker to stderr and
# reads until the marker arrives: the pipe keeps order, so by then every earlier
# line has come in. Without this the check was racy (1 run in 4 missed the error).
DRAIN_MARKER = "bone-age-notebooks: stderr drained"


def _client_class():
    from queue import Empty

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete
    from nbclient.util import ensure_async
    from nbformat.v4 import output_from_msg

    class EvcxrClient(NotebookClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cell_of_msg: dict[str, int] = {}

        def keep_late_stderr(self, msg) -> None:
            content = msg.get("content", {})
            index = self.cell_of_msg.get(msg["parent_header"].get("msg_id"))
            if msg.get("msg_type") == "stream" and content.get("name") == "stderr" and index is not None:
                if DRAIN_MARKER not in content.get("text", ""):
                    self.nb.cells[index].outputs.append(output_from_msg(msg))

        async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
            self.cell_of_msg[parent_msg_id] = cell_index
            while True:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
                if msg["parent_header"].get("msg_id") != parent_msg_id:
                    self.keep_late_stderr(msg)
                    continue
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
            if cell_index == len(self.nb.cells) - 1:
                await self.drain_stderr()
            return result

        async def drain_stderr(self) -> None:
            """Reads iopub until the marker written to stderr after the last cell arrives."""
            msg_id = await ensure_async(self.kc.execute(f'eprintln!("{DRAIN_MARKER}");', store_history=False))
            self.cell_of_msg[msg_id] = len(self.nb.cells) - 1
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=deadline - time.monotonic()))
                except Empty:
                    break
                self.keep_late_stderr(msg)
                if msg.get("msg_type") == "stream" and DRAIN_MARKER in msg.get("content", {}).get("text", ""):
                    return
            raise CellStderr("the kernel did not echo the stderr marker within 120 s, so a late `?` error may be missed")

    return EvcxrClient


def execute(nb, cwd: Path, timeout: int) -> str | None:
    """Runs `nb` in place on its kernel from `cwd`; None when every cell succeeded, else why not."""
    from nbclient.exceptions import CellExecutionError

    client = _client_class()(
        nb,
        timeout=timeout,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "rust"),
        resources={"metadata": {"path": str(cwd.resolve())}},
    )

    # Each cell is checked for stderr when the next one starts, and all of them
    # after the run (and the drain).
    def check_before(cell, cell_index, **_):
        failure = stderr_failure(nb, cell_index)
        if failure:
            raise CellStderr(failure)

    client.on_cell_start = check_before
    try:
        client.execute()
        failure = stderr_failure(nb, len(nb.cells))
        if failure:
            raise CellStderr(failure)
        return None
    except (CellExecutionError, CellStderr) as e:
        # A compile error may follow from an earlier cell's `?` error: report that first.
        failure = error_output(nb) or str(e)
        cause = stderr_failure(nb, len(nb.cells))
        return f"{cause}\nthen: {failure}" if cause and cause not in failure else failure


def error_output(nb) -> str | None:
    """The first cell with an error output (a compile error or a panic), described in plain text."""
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                trace = ANSI.sub("", "\n".join(o.get("traceback", [])))
                return f"cell {i} failed: {o.get('ename')}: {o.get('evalue')}\n{cell.source}\n---\n{trace}"
    return None


def run(paths: list[Path], out: Path, timeout: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        start = time.monotonic()
        try:
            failure = execute(nb, p.parent, timeout)
        finally:
            nbformat.write(nb, out / p.name)
        failed += failure is not None
        status = "ok" if failure is None else f"FAILED\n{failure}"
        print(f"{p}: {status} in {time.monotonic() - start:.1f} s -> {out / p.name}", flush=True)
    print(f"notebooks: {len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


def selftest(timeout: int, verbose: bool) -> int:
    """The runner itself: a good notebook passes; a compile error and a `?` error (also in the last cell) fail."""
    from nbformat.v4 import new_code_cell, new_notebook

    cases = {
        "good": (["let x = 40 + 2;", 'println!("{x}");'], True),
        "compile error": (['let y: i32 = "forty-two";'], False),
        "? error": (['let n: i32 = "x".parse()?;', 'println!("not reached");'], False),
        "? error in the last cell": (['let n: i32 = "x".parse()?;'], False),
    }
    bad = 0
    for name, (cells, should_pass) in cases.items():
        nb = new_notebook(cells=[new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "rust", "display_name": "Rust", "language": "rust"}
        failure = execute(nb, Path("."), timeout)
        if (failure is None) != should_pass:
            bad += 1
            print(f"runner self-test {name!r}: expected {'pass' if should_pass else 'failure'}, got {failure or 'pass'}")
        elif verbose:
            print(f"runner self-test {name!r}: {failure or 'pass'}")
    print(f"runner self-test: {len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("check", "strip", "run", "selftest"):
        sp = sub.add_parser(name)
        if name != "selftest":
            sp.add_argument("notebooks", nargs="+", type=Path)
        if name in ("run", "selftest"):
            if name == "run":
                sp.add_argument("--out", type=Path, required=True, help="where executed copies go")
            sp.add_argument("--timeout", type=int, default=1800, help="seconds per cell (first builds are slow)")
        if name == "selftest":
            sp.add_argument("--verbose", action="store_true", help="print what each case reported")
    a = ap.parse_args()
    if a.cmd == "check":
        return check(a.notebooks)
    if a.cmd == "strip":
        return strip(a.notebooks)
    if a.cmd == "selftest":
        return selftest(a.timeout, a.verbose)
    return run(a.notebooks, a.out, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
