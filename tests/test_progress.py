"""Progress bars: redrawn in place at a terminal, a line at a time in a log."""

import fcntl
import io
import os
import select
import struct
import termios
import time

from tha_studio.progress import progress_bar, show


def test_in_a_log_a_bar_is_a_line_where_it_starts_and_where_it_ends():
    log = io.StringIO()
    with progress_bar(stream=log, total=10_000, desc="bake", unit="frame") as bar:
        for _ in range(10_000):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert [line.split("|")[0] for line in lines] == ["bake:   0%", "bake: 100%"]
    assert "10000/10000" in lines[1]


def test_in_a_log_a_long_run_adds_a_line_an_interval_and_its_end_once():
    log = io.StringIO()
    with progress_bar(stream=log, log_interval=0.05, total=100, desc="shard 1/1", unit="img") as bar:
        for _ in range(20):
            time.sleep(0.02)
            show(bar, bar.n + 5, f"{bar.n + 5} images")
    lines = log.getvalue().splitlines()
    assert 4 <= len(lines) <= 12, lines
    counts = [int(line.split("|")[2].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 100
    assert counts.count(100) == 1  # the close does not repeat a last line already written
    assert "100 images" in lines[-1]


def test_at_a_terminal_the_bar_redraws_in_place():
    main, side = os.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a new pty is 0 columns wide
    with os.fdopen(side, "w") as terminal:
        with progress_bar(stream=terminal, total=3, desc="bake", unit="frame", mininterval=0) as bar:
            for _ in range(3):
                bar.update(1)
        terminal.flush()
        written = b""
        while select.select([main], [], [], 0.5)[0]:
            written += os.read(main, 65536)
    os.close(main)
    redraws = [draw for draw in written.decode().split("\r") if draw.strip()]
    assert len(redraws) >= 4 and "0/3" in redraws[0] and "3/3" in redraws[-1]


def test_a_bar_switched_off_writes_nothing():
    log = io.StringIO()
    with progress_bar(stream=log, total=5, disable=True) as bar:
        bar.update(5)
    assert log.getvalue() == ""
